# kafka-tls-proxy as a Nomad system job: one proxy on every eligible node, on the host network,
# listening on 127.0.0.1 for the services of that node. Services on the node use
#   bootstrap.servers = 127.0.0.1:9092        (brokers are advertised as 127.0.0.1:9100+N)
# and no certificates: the proxy holds the client certificate and does mutual TLS to Amazon MSK.
#
#   nomad job run -var 'msk_bootstrap=b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094,b-2.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9094' \
#       nomad/kafka-tls-proxy.nomad.hcl
#
# Requirements on each Nomad client:
#   * a host network for the loopback address (so ports, the health check and the service address
#     are 127.0.0.1; without it Nomad would check the node's LAN address, where nothing listens):
#         client { host_network "loopback" { cidr = "127.0.0.1/32" } }
#   * the docker driver (the image is built from the repository's Dockerfile). For the exec
#     driver instead: driver = "exec", config { command = "local/kafka-tls-proxy" args = [...] }
#     and an artifact block fetching the release tarball (see README, "Deploy: Nomad").
#   * max_kill_timeout (client config, default 30s) >= kill_timeout below.
#
# Certificates come from Vault (KV v2 secret at var.vault_secret_path with the fields
# certificate, private_key, passphrase; MSK client certificates are issued by AWS Private CA and
# stored there). Templates re-render when the secret changes and send SIGHUP: the proxy reloads
# the certificate, key and passphrase without dropping live connections.
# With Nomad Variables instead of Vault, replace each `with secret ...` by
#   {{ with nomadVar "nomad/jobs/kafka-tls-proxy" }}{{ .certificate }}{{ end }}
# and drop the vault block (see README).
#
# Identities: the flags configure the DEFAULT identity (bootstrap 9092, brokers 9100+N, the
# client certificate above, policy full): services that used the proxy before keep using it
# unchanged. Two more services of the node get their own port pair and their own principal at
# MSK from the [[identity]] tables of local/kafka-tls-proxy.toml (--config), in the same process:
#   orders     bootstrap 9192, brokers 9200+N, certificate from var.orders_vault_secret_path,
#              policy no-admin (produce and consume, transactions; no topic/config/ACL changes)
#   reporting  bootstrap 9292, brokers 9300+N, certificate from var.reporting_vault_secret_path,
#              policy read-only (consume, groups and offset commits, metadata and describes)
# Each service points at its own bootstrap (orders: bootstrap.servers = 127.0.0.1:9192) and acts
# at MSK as the principal of its certificate; MSK's ACLs for that principal apply. Every
# identity's certificate, key and passphrase reload on SIGHUP, each independently of the others.
# The vault role's policy must allow reading all three secret paths. The proxy refuses to start
# when two identities could use the same port: each claims its bootstrap port and its whole
# broker range BASE .. BASE + max_brokers - 1 (9100-9189, 9200-9289, 9300-9389 here).

variable "msk_bootstrap" {
  type        = string
  description = "MSK bootstrap brokers for mutual TLS (port 9094), comma-separated host:port."
}

variable "image" {
  type        = string
  description = "Container image built from the repository's Dockerfile."
  default     = "ghcr.io/example/kafka-tls-proxy:latest"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "host_network" {
  type        = string
  description = "Name of the client host_network whose address is 127.0.0.1."
  default     = "loopback"
}

variable "bootstrap_port" {
  type    = number
  default = 9092
}

variable "broker_port_base" {
  type        = number
  description = "Broker with node id N listens on broker_port_base + N (MSK node ids start at 1)."
  default     = 9100
}

variable "broker_count" {
  type        = number
  description = "Number of MSK brokers (node ids 1..broker_count): their ports are reserved on the node."
  default     = 3
}

variable "max_brokers" {
  type        = number
  description = "--max-brokers: node ids 0..max_brokers-1 get BASE + id. Each identity claims its whole range, so 90 keeps 9100+, 9200+ and 9300+ apart (MSK node ids start at 1)."
  default     = 90
}

variable "admin_port" {
  type        = number
  description = "Admin HTTP port (/metrics, /healthz, /readyz), on 127.0.0.1."
  default     = 9644
}

variable "drain_timeout" {
  type        = string
  description = "How long in-flight requests may finish after SIGTERM. Must stay below kill_timeout (30s)."
  default     = "25s"
}

variable "vault_secret_path" {
  type        = string
  description = "Vault KV v2 path holding certificate, private_key and passphrase."
  default     = "secret/data/kafka-tls-proxy/client"
}

variable "vault_role" {
  type    = string
  default = "kafka-tls-proxy"
}

# The two services with an identity of their own (see the [[identity]] tables below).
variable "orders_bootstrap_port" {
  type    = number
  default = 9192
}

variable "orders_broker_port_base" {
  type    = number
  default = 9200
}

variable "orders_vault_secret_path" {
  type        = string
  description = "Vault KV v2 path of the orders service's client certificate, certificate + private_key + passphrase (its own principal at MSK)."
  default     = "secret/data/kafka-tls-proxy/orders"
}

variable "reporting_bootstrap_port" {
  type    = number
  default = 9292
}

variable "reporting_broker_port_base" {
  type    = number
  default = 9300
}

variable "reporting_vault_secret_path" {
  type        = string
  description = "Vault KV v2 path of the reporting service's client certificate, certificate + private_key + passphrase (its own principal at MSK)."
  default     = "secret/data/kafka-tls-proxy/reporting"
}

variable "memory_mb" {
  type        = number
  description = "Task memory (MiB): about 40 MiB for the process, 0.25 MiB per busy connection, plus max_buffered_bytes."
  default     = 256
}

variable "max_buffered_bytes" {
  type        = number
  description = "--max-buffered-bytes: the frame memory budget of all identities' connections together (the proxy's default, 128 MiB)."
  default     = 134217728
}

job "kafka-tls-proxy" {
  type        = "system"
  datacenters = var.datacenters

  # Rolling restarts, one node at a time. Services on a node see their proxy go away for the
  # few seconds of a restart (Kafka clients reconnect by themselves).
  update {
    max_parallel     = 1
    stagger          = "30s"
    min_healthy_time = "10s"
    healthy_deadline = "2m"
  }

  group "proxy" {
    network {
      mode = "host"

      port "bootstrap" {
        static       = var.bootstrap_port
        host_network = var.host_network
      }
      port "admin" {
        static       = var.admin_port
        host_network = var.host_network
      }
      # One port per broker: node id N -> broker_port_base + N (the proxy's own formula).
      dynamic "port" {
        for_each = range(1, var.broker_count + 1)
        labels   = ["broker_${port.value}"]
        content {
          static       = var.broker_port_base + port.value
          host_network = var.host_network
        }
      }

      # The orders identity: its own bootstrap and broker ports.
      port "orders_bootstrap" {
        static       = var.orders_bootstrap_port
        host_network = var.host_network
      }
      dynamic "port" {
        for_each = range(1, var.broker_count + 1)
        labels   = ["orders_broker_${port.value}"]
        content {
          static       = var.orders_broker_port_base + port.value
          host_network = var.host_network
        }
      }

      # The reporting identity: its own bootstrap and broker ports.
      port "reporting_bootstrap" {
        static       = var.reporting_bootstrap_port
        host_network = var.host_network
      }
      dynamic "port" {
        for_each = range(1, var.broker_count + 1)
        labels   = ["reporting_broker_${port.value}"]
        content {
          static       = var.reporting_broker_port_base + port.value
          host_network = var.host_network
        }
      }
    }

    service {
      name     = "kafka-tls-proxy"
      provider = "nomad"
      port     = "bootstrap"
      tags     = ["kafka", "metrics-path=/metrics"]

      # Ready: certificates loaded and an MSK broker reachable over mutual TLS recently.
      check {
        name     = "ready"
        type     = "http"
        port     = "admin"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
      # Alive: restart a hung process (not an unreachable MSK: that is what /readyz reports).
      check {
        name     = "alive"
        type     = "http"
        port     = "admin"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "kafka-tls-proxy" {
      driver = "docker"

      # SIGTERM: stop accepting, drain in-flight requests for up to --drain-timeout, exit 0.
      # kill_timeout must exceed the drain timeout or Nomad SIGKILLs a draining proxy.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image        = var.image
        network_mode = "host"
        # The image's entrypoint is the binary; these flags replace its default CMD ["run"].
        args = [
          "--upstream=${var.msk_bootstrap}",
          "--client-cert=${NOMAD_SECRETS_DIR}/client.pem",
          "--client-key=${NOMAD_SECRETS_DIR}/client.key",
          "--client-key-passphrase-file=${NOMAD_SECRETS_DIR}/client.pass",
          "--bind-address=${NOMAD_IP_bootstrap}",
          "--advertised-host=${NOMAD_IP_bootstrap}",
          "--bootstrap-port=${NOMAD_PORT_bootstrap}",
          "--broker-port-base=${var.broker_port_base}",
          "--max-brokers=${var.max_brokers}",
          "--admin-address=${NOMAD_IP_admin}:${NOMAD_PORT_admin}",
          "--drain-timeout=${var.drain_timeout}",
          "--max-buffered-bytes=${var.max_buffered_bytes}",
          "--config=${NOMAD_TASK_DIR}/kafka-tls-proxy.toml",
          "--log-format=json",
        ]
      }

      vault {
        role        = var.vault_role
        change_mode = "noop"
      }

      template {
        destination   = "secrets/client.pem"
        perms         = "0400"
        uid           = 65532 # the image's non-root user (distroless "nonroot")
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.vault_secret_path}" }}{{ .Data.data.certificate }}{{ end }}
        EOT
      }

      template {
        destination   = "secrets/client.key"
        perms         = "0400"
        uid           = 65532 # the image's non-root user (distroless "nonroot")
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.vault_secret_path}" }}{{ .Data.data.private_key }}{{ end }}
        EOT
      }

      # The proxy reads the passphrase file again at every reload: a new key with a new
      # passphrase (AWS Private CA exports each with its own) needs only SIGHUP.
      template {
        destination   = "secrets/client.pass"
        perms         = "0400"
        uid           = 65532 # the image's non-root user (distroless "nonroot")
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.vault_secret_path}" }}{{ .Data.data.passphrase }}{{ end }}
        EOT
      }

      # The orders identity's certificate, key and passphrase (its own Vault secret).
      template {
        destination   = "secrets/orders.pem"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.orders_vault_secret_path}" }}{{ .Data.data.certificate }}{{ end }}
        EOT
      }

      template {
        destination   = "secrets/orders.key"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.orders_vault_secret_path}" }}{{ .Data.data.private_key }}{{ end }}
        EOT
      }

      template {
        destination   = "secrets/orders.pass"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.orders_vault_secret_path}" }}{{ .Data.data.passphrase }}{{ end }}
        EOT
      }

      # The reporting identity's certificate, key and passphrase (its own Vault secret).
      template {
        destination   = "secrets/reporting.pem"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.reporting_vault_secret_path}" }}{{ .Data.data.certificate }}{{ end }}
        EOT
      }

      template {
        destination   = "secrets/reporting.key"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.reporting_vault_secret_path}" }}{{ .Data.data.private_key }}{{ end }}
        EOT
      }

      template {
        destination   = "secrets/reporting.pass"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{ with secret "${var.reporting_vault_secret_path}" }}{{ .Data.data.passphrase }}{{ end }}
        EOT
      }

      # The identities (--config). No secrets: file names and ports only. The proxy reads this
      # file at start, so a change restarts the task (ports are reserved above: keep both in
      # step); certificates reload by SIGHUP from their own templates.
      template {
        destination = "local/kafka-tls-proxy.toml"
        perms       = "0444"
        change_mode = "restart"
        data        = <<-EOT
        [[identity]]
        name = "orders"
        bootstrap-port = ${var.orders_bootstrap_port}
        broker-port-base = ${var.orders_broker_port_base}
        client-cert = "{{ env "NOMAD_SECRETS_DIR" }}/orders.pem"
        client-key = "{{ env "NOMAD_SECRETS_DIR" }}/orders.key"
        client-key-passphrase-file = "{{ env "NOMAD_SECRETS_DIR" }}/orders.pass"
        policy = "no-admin"

        [[identity]]
        name = "reporting"
        bootstrap-port = ${var.reporting_bootstrap_port}
        broker-port-base = ${var.reporting_broker_port_base}
        client-cert = "{{ env "NOMAD_SECRETS_DIR" }}/reporting.pem"
        client-key = "{{ env "NOMAD_SECRETS_DIR" }}/reporting.key"
        client-key-passphrase-file = "{{ env "NOMAD_SECRETS_DIR" }}/reporting.pass"
        policy = "read-only"
        EOT
      }

      # One process serves every identity; --max-buffered-bytes is the budget of all their
      # connections together: memory ~ 40 MiB + 0.25 MiB per busy connection + the budget
      # (README "Sizing and limits"), so 256 MiB with the default 128 MiB budget.
      resources {
        cpu    = 200
        memory = var.memory_mb
      }
    }
  }
}
