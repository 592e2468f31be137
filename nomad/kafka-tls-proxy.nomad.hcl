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
          "--admin-address=${NOMAD_IP_admin}:${NOMAD_PORT_admin}",
          "--drain-timeout=${var.drain_timeout}",
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

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
