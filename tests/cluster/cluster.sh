#!/usr/bin/env bash
# tests/cluster/cluster.sh: the project's one mechanism for a real mutual-TLS Kafka cluster (MSK-like)
# used by the tests, the benchmarks and the dev setup.
#
#   cluster.sh fetch               download the jars of $KAFKA_VERSION (Maven Central -> .cache/kafka/V/libs)
#   cluster.sh start               fresh 3-node KRaft cluster; returns when every broker answers Metadata
#                                  over mutual TLS on its own address; creates the ACLs; writes cluster.env
#   cluster.sh stop                stop every node of this cluster dir; no process left behind
#   cluster.sh stop-broker N [--kill]   controlled shutdown (SIGTERM) of node N, or SIGKILL with --kill
#   cluster.sh start-broker N      restart node N on its data, wait until it is ready again
#   cluster.sh status              pids and readiness of each node
#   cluster.sh cli TOOL [ARGS...]  run a Kafka CLI tool of the selected version, e.g.
#                                  cli topics --bootstrap-server b-1.msk.test:9094 --command-config "$KTP_ADMIN_PROPERTIES" --list
#                                  TOOL: console-producer console-consumer topics acls configs consumer-groups
#                                  producer-perf-test consumer-perf-test broker-api-versions metadata-quorum
#                                  get-offsets features cluster transactions leader-election log-dirs
#                                  reassign-partitions delete-records dump-log verifiable-producer
#                                  verifiable-consumer share-groups storage, or a fully qualified class name
#   cluster.sh env                 print the path of cluster.env (exists only while the cluster is up)
#   cluster.sh classpath           print the Java classpath of the selected version
#
# The broker names must resolve: run under tests/with-hosts (e.g. `tests/with-hosts tests/cluster/cluster.sh start`).
#
# Settings (environment):
#   KAFKA_VERSION     Kafka release: 4.1.2 (default), 3.9.2, 4.4.0; aliases 3.9 / 3.9.x, 4.1 / 4.1.x, 4.4 / 4.4.x
#   KTP_CLUSTER_DIR   state dir (default <repo>/target/kafka-cluster): config/, data/, logs node-N.log,
#                     pids/, tls/, client-*.properties, cluster.env
#   KTP_KAFKA_CACHE   jar cache (default <repo>/.cache/kafka)
#   KTP_JAVA          java binary (default: $JAVA_HOME/bin/java or java; a newer JDK from /usr/lib/jvm is
#                     picked automatically when the Kafka jars need it)
#   KTP_BROKER_HEAP   broker heap (default 512m), KTP_START_TIMEOUT seconds (default 150)
#
# The cluster (MSK-like):
#   node N (1,2,3): KRaft combined broker+controller, binds 127.0.0.1N, advertises b-N.msk.test
#     9094 CLIENT       SSL, ssl.client.auth=required (like MSK's 9094)
#     9096 SCRAM        SASL_SSL, SCRAM-SHA-512, no client certificate (like MSK's 9096),
#                       connections.max.reauth.ms=10000 (sessions of 10 s: KIP-368 re-authentication)
#     9095 REPLICATION  SSL mutual, inter-broker, broker certificate
#     9093 CONTROLLER   SSL mutual, KRaft quorum (static controller.quorum.voters), broker certificate
#   certificates: certs-dev/ (one wildcard *.msk.test broker cert; the dev CA is the only trust anchor)
#   principals (ssl.principal.mapping.rules = certificate CN): User:admin, User:broker (super users),
#     User:service, User:readonly; StandardAuthorizer, allow.everyone.if.no.acl.found=false
#   SCRAM-SHA-512 users admin, service, readonly (created by kafka-storage format --add-scram): the
#     same principals as the certificates, so the same ACLs apply; passwords in tls/scram-WHO.pass
#   ACLs:  User:service   topics  prefixed "svc."  Read Write Create Describe DescribeConfigs
#                         groups  prefixed "svc."  Read Describe
#                         transactional ids prefixed "svc."  Write Describe
#          User:readonly  topics  all ("*")        Read Describe DescribeConfigs
#                         groups  prefixed "ro."   Read Describe
#   auto.create.topics.enable=true (as a policy test needs: Metadata must not create topics under
#   read-only), internal topics RF 3, min.insync.replicas=2,
#   default.replication.factor=3, num.partitions=3
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CERTS="$REPO/certs-dev"
DIR=${KTP_CLUSTER_DIR:-$REPO/target/kafka-cluster}
CACHE=${KTP_KAFKA_CACHE:-$REPO/.cache/kafka}
CLUSTER_ID="a3RwLXRlc3QtY2x1c3Rlcg"   # base64url("ktp-test-cluster"), fixed
NODES="1 2 3"
CLIENT_PORT=9094 REPL_PORT=9095 CTRL_PORT=9093 SCRAM_PORT=9096
SCRAM_USERS="admin service readonly"
BOOTSTRAP="b-1.msk.test:$CLIENT_PORT,b-2.msk.test:$CLIENT_PORT,b-3.msk.test:$CLIENT_PORT"
SCRAM_BOOTSTRAP="b-1.msk.test:$SCRAM_PORT,b-2.msk.test:$SCRAM_PORT,b-3.msk.test:$SCRAM_PORT"
HEAP=${KTP_BROKER_HEAP:-512m}
START_TIMEOUT=${KTP_START_TIMEOUT:-150}

case "${KAFKA_VERSION:-}" in
  ""|4.1|4.1.x) V=4.1.2 ;;
  3.9|3.9.x) V=3.9.2 ;;
  4.4|4.4.x) V=4.4.0 ;;
  *) V=$KAFKA_VERSION ;;
esac
LIBS="$CACHE/$V/libs"

# python3 for kafka_ping.py / kafka_acls.py (stdlib only, any python3 >= 3.7)
PYTHON=${KTP_PYTHON:-}
if [ -z "$PYTHON" ]; then
  for p in python3 /usr/bin/python3; do
    if "$p" -c 'import ssl' >/dev/null 2>&1; then PYTHON=$(command -v "$p"); break; fi
  done
fi
PYTHON=${PYTHON:-python3}

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
ip_of() { echo "127.0.0.1$1"; }
host_of() { echo "b-$1.msk.test"; }

# ---------------------------------------------------------------- fetch
fetch() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka $V (apt-get install maven)"
  log "fetching Kafka $V from Maven Central into $LIBS"
  local t0; t0=$(now)
  rm -rf "$LIBS.tmp"
  mkdir -p "$LIBS.tmp"
  if ! mvn -q -B -f "$HERE/pom.xml" -Dkafka.version="$V" \
      dependency:copy-dependencies -DincludeScope=runtime \
      -DexcludeArtifactIds=slf4j-reload4j,slf4j-log4j12,log4j-slf4j-impl,log4j-slf4j2-impl \
      -DoutputDirectory="$LIBS.tmp" >"$CACHE/$V.mvn.log" 2>&1; then
    tail -30 "$CACHE/$V.mvn.log" >&2
    die "Maven could not fetch Kafka $V (full log: $CACHE/$V.mvn.log)"
  fi
  [ -f "$LIBS.tmp/kafka_2.13-$V.jar" ] || die "kafka_2.13-$V.jar missing after Maven fetch"
  # index of class names (to find the CLI tool classes, which moved between 3.x and 4.x) and the
  # class file version the broker needs
  python3 - "$LIBS.tmp" "$CACHE/$V" "$V" <<'EOF'
import glob, os, struct, sys, zipfile
libs, out, v = sys.argv[1:]
names = set()
for j in glob.glob(os.path.join(libs, "*.jar")):
    with zipfile.ZipFile(j) as z:
        for n in z.namelist():
            if n.endswith(".class") and "$" not in n and not n.startswith("META-INF"):
                names.add(n[:-6].replace("/", "."))
with open(os.path.join(out, "classes.txt"), "w") as f:
    f.write("\n".join(sorted(names)) + "\n")
major = 0
for art in ("kafka-server", "kafka_2.13", "kafka-tools"):
    with zipfile.ZipFile(os.path.join(libs, "%s-%s.jar" % (art, v))) as z:
        for n in z.namelist():
            if n.endswith(".class") and not n.startswith("META-INF"):
                major = max(major, struct.unpack(">H", z.read(n)[6:8])[0] - 44)
                break
with open(os.path.join(out, "java-release"), "w") as f:
    f.write("%d\n" % major)
EOF
  rm -rf "$LIBS"
  mv "$LIBS.tmp" "$LIBS"
  touch "$LIBS/.complete"
  log "fetched Kafka $V ($(ls "$LIBS" | grep -c '\.jar$') jars) in $(since "$t0") s"
}

# ---------------------------------------------------------------- java
java_feature() { # $1 = java binary -> feature version (17, 21, 25)
  "$1" -version 2>&1 | awk -F'"' '/version/ { split($2, a, "."); print (a[1] == "1" ? a[2] : a[1]); exit }'
}
pick_java() {
  [ -n "${JAVA:-}" ] && return 0
  local need; need=$(cat "$CACHE/$V/java-release" 2>/dev/null || echo 17)
  local cands=() j
  [ -n "${KTP_JAVA:-}" ] && cands+=("$KTP_JAVA")
  [ -n "${JAVA_HOME:-}" ] && cands+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && cands+=("$(command -v java)")
  for j in /usr/lib/jvm/*/bin/java; do [ -x "$j" ] && cands+=("$j"); done
  for j in "${cands[@]}"; do
    [ -x "$j" ] || continue
    if [ "$(java_feature "$j")" -ge "$need" ] 2>/dev/null; then JAVA=$j; return 0; fi
  done
  die "no Java >= $need found for Kafka $V (set KTP_JAVA)"
}

# ---------------------------------------------------------------- CLI tool classes
tool_candidates() {
  case "$1" in
    broker|kafka) echo kafka.Kafka ;;
    storage) echo org.apache.kafka.tools.StorageTool kafka.tools.StorageTool ;;
    console-producer) echo org.apache.kafka.tools.ConsoleProducer kafka.tools.ConsoleProducer ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer kafka.tools.ConsoleConsumer ;;
    topics) echo org.apache.kafka.tools.TopicCommand kafka.admin.TopicCommand ;;
    acls) echo org.apache.kafka.tools.AclCommand kafka.admin.AclCommand ;;
    configs) echo org.apache.kafka.tools.ConfigCommand kafka.admin.ConfigCommand ;;
    consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand kafka.admin.ConsumerGroupCommand ;;
    share-groups) echo org.apache.kafka.tools.consumer.group.ShareGroupCommand ;;
    producer-perf-test) echo org.apache.kafka.tools.ProducerPerformance ;;
    consumer-perf-test) echo org.apache.kafka.tools.ConsumerPerformance kafka.tools.ConsumerPerformance ;;
    broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand kafka.admin.BrokerApiVersionsCommand ;;
    metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    features) echo org.apache.kafka.tools.FeatureCommand kafka.admin.FeatureCommand ;;
    cluster) echo org.apache.kafka.tools.ClusterTool ;;
    transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell kafka.tools.GetOffsetShell ;;
    leader-election) echo org.apache.kafka.tools.LeaderElectionCommand kafka.admin.LeaderElectionCommand ;;
    log-dirs) echo org.apache.kafka.tools.LogDirsCommand kafka.admin.LogDirsCommand ;;
    reassign-partitions) echo org.apache.kafka.tools.reassign.ReassignPartitionsCommand kafka.admin.ReassignPartitionsCommand ;;
    delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand kafka.admin.DeleteRecordsCommand ;;
    dump-log) echo org.apache.kafka.tools.DumpLogSegments kafka.tools.DumpLogSegments ;;
    verifiable-producer) echo org.apache.kafka.tools.VerifiableProducer ;;
    verifiable-consumer) echo org.apache.kafka.tools.VerifiableConsumer ;;
    *.*) echo "$1" ;;
    *) return 1 ;;
  esac
}
tool_class() {
  local c cands
  cands=$(tool_candidates "$1") || die "unknown tool '$1' (see the header of $0)"
  for c in $cands; do
    if grep -qxF "$c" "$CACHE/$V/classes.txt"; then echo "$c"; return 0; fi
  done
  die "tool '$1' not found in Kafka $V (looked for: $cands)"
}

cli() {
  [ $# -ge 1 ] || die "usage: cluster.sh cli TOOL [ARGS...]"
  fetch
  pick_java
  local tool=$1; shift
  local cls; cls=$(tool_class "$tool")
  local opts
  case "$tool" in
    *perf-test|verifiable-*) opts="-Xms256m -Xmx1g -XX:+UseG1GC" ;;
    *) opts="-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1" ;;
  esac
  # shellcheck disable=SC2086
  exec "$JAVA" $opts ${KTP_CLI_JAVA_OPTS:-} -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.defaultLogLevel="${KTP_CLI_LOG_LEVEL:-warn}" \
    -Dorg.slf4j.simpleLogger.logFile=System.err \
    -Dlog4j2.level=warn \
    -cp "$LIBS/*" "$cls" "$@"
}

# ---------------------------------------------------------------- processes
marker() { echo "-Dktp.cluster.dir=$DIR"; }
marker_pids() { # java processes of this cluster dir (optionally node $1)
  local want; want="$(marker)${1:+ -Dktp.cluster.node=$1}"
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    case "$cmd" in *"$want "*) echo "${p#/proc/}" ;; esac
  done
}
port_pids() { # processes listening on our addresses (leftovers of any earlier run)
  local n out
  for n in ${1:-$NODES}; do
    out=$(ss -Htlnp "( sport = :$CLIENT_PORT or sport = :$REPL_PORT or sport = :$CTRL_PORT or sport = :$SCRAM_PORT )" 2>/dev/null \
      | awk -v ip="$(ip_of "$n")" '$4 ~ "^"ip":" || $4 ~ "^\\[::ffff:"ip"\\]:"' || true)
    grep -o 'pid=[0-9]*' <<<"$out" | cut -d= -f2 || true
  done | sort -u
}
node_pid() { # live pid of node $1 or nothing
  local f="$DIR/pids/node-$1.pid" p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "-Dktp.cluster.node=$1 "; then
    echo "$p"
  fi
}
wait_gone() { # pids... ; wait up to $GRACE s, then SIGKILL, then wait
  local deadline p alive
  deadline=$(( $(date +%s) + ${GRACE:-15} ))
  while :; do
    alive=""
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      # shellcheck disable=SC2086
      kill -KILL $alive 2>/dev/null || true
      deadline=$(( $(date +%s) + 10 ))
      GRACE=0
      sleep 0.2
      continue
    fi
    sleep 0.2
  done
}
kill_nodes() { # signal, nodes ; kills node pids (pid files + markers + port owners) and waits
  local sig=$1; shift
  local pids="" n p
  for n in "$@"; do
    pids="$pids $(node_pid "$n") $(marker_pids "$n") $(port_pids "$n")"
  done
  pids=$(tr ' ' '\n' <<<"$pids" | grep -E '^[0-9]+$' | grep -vx "$$" | sort -u | tr '\n' ' ' || true)
  if [ -n "${pids// /}" ]; then
    for p in $pids; do kill "-$sig" "$p" 2>/dev/null || true; done
    wait_gone $pids
  fi
  for n in "$@"; do rm -f "$DIR/pids/node-$n.pid"; done
}

# ---------------------------------------------------------------- config
write_configs() {
  mkdir -p "$DIR/config" "$DIR/data" "$DIR/pids" "$DIR/tls"
  # PEM keystores: private key + certificate chain in one file
  local who
  for who in broker admin service readonly; do
    cat "$CERTS/$who.key" "$CERTS/$who.pem" >"$DIR/tls/$who-keystore.pem"
    chmod 600 "$DIR/tls/$who-keystore.pem"
  done
  for who in $SCRAM_USERS; do
    printf '%s\n' "$(scram_password "$who")" >"$DIR/tls/scram-$who.pass"
    chmod 600 "$DIR/tls/scram-$who.pass"
  done
  local voters="" n
  for n in $NODES; do voters="${voters:+$voters,}$n@$(host_of "$n"):$CTRL_PORT"; done
  for n in $NODES; do
    cat >"$DIR/config/node-$n.properties" <<EOF
# generated by tests/cluster/cluster.sh for Kafka $V
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=CLIENT://$(ip_of "$n"):$CLIENT_PORT,REPLICATION://$(ip_of "$n"):$REPL_PORT,CONTROLLER://$(ip_of "$n"):$CTRL_PORT,SCRAM://$(ip_of "$n"):$SCRAM_PORT
advertised.listeners=CLIENT://$(host_of "$n"):$CLIENT_PORT,REPLICATION://$(host_of "$n"):$REPL_PORT,SCRAM://$(host_of "$n"):$SCRAM_PORT
listener.security.protocol.map=CLIENT:SSL,REPLICATION:SSL,CONTROLLER:SSL,SCRAM:SASL_SSL
inter.broker.listener.name=REPLICATION
controller.listener.names=CONTROLLER
log.dirs=$DIR/data/node-$n

ssl.keystore.type=PEM
ssl.keystore.location=$DIR/tls/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.pem
ssl.client.auth=required
ssl.endpoint.identification.algorithm=https
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT

# MSK's 9096: SASL/SCRAM-SHA-512 over TLS without client certificates; sessions expire after
# 10 s unless the client re-authenticates (KIP-368)
listener.name.scram.ssl.client.auth=none
listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.scram.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.scram.connections.max.reauth.ms=10000

authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:broker
allow.everyone.if.no.acl.found=false

auto.create.topics.enable=true
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0

# small and light: 3 nodes beside the proxy and the clients on 2 cores
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.segment.bytes=67108864
log.index.size.max.bytes=1048576
log.retention.check.interval.ms=60000
EOF
  done
}

broker_java_opts() { # node
  echo "-Xms$HEAP -Xmx$HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35" \
    "-XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true" \
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.showDateTime=true" \
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS -Dorg.slf4j.simpleLogger.logFile=System.err" \
    "-Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn -Dorg.slf4j.simpleLogger.log.state.change.logger=warn" \
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient=warn" \
    "$(marker) -Dktp.cluster.node=$1"
}

format_storage() {
  local n pids=() rc=0 i=0
  for n in $NODES; do
    rm -rf "$DIR/data/node-$n"
    "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
      -Dlog4j2.level=warn -cp "$LIBS/*" "$(tool_class storage)" format -t "$CLUSTER_ID" \
      -c "$DIR/config/node-$n.properties" $(scram_args) >"$DIR/format-$n.log" 2>&1 &
    pids+=($!)
  done
  for n in $NODES; do
    if ! wait "${pids[$i]}"; then
      rc=1
      log "formatting storage of node $n failed:"
      tail -20 "$DIR/format-$n.log" >&2
    fi
    i=$((i + 1))
  done
  [ "$rc" = 0 ] || die "kafka-storage format failed"
}

scram_password() { echo "$1-scram-secret"; }
scram_args() { # kafka-storage format arguments creating the SCRAM users
  local who
  for who in $SCRAM_USERS; do
    printf -- '--add-scram SCRAM-SHA-512=[name=%s,password=%s] ' "$who" "$(scram_password "$who")"
  done
}

launch_node() { # node
  local n=$1
  mkdir -p "$DIR/pids"
  printf '\n===== cluster.sh: starting node %s (Kafka %s) at %s =====\n' "$n" "$V" "$(date -Is)" >>"$DIR/node-$n.log"
  # shellcheck disable=SC2046
  setsid "$JAVA" $(broker_java_opts "$n") -cp "$LIBS/*" kafka.Kafka "$DIR/config/node-$n.properties" \
    >>"$DIR/node-$n.log" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/pids/node-$n.pid"
  disown $! 2>/dev/null || true
}

ping_args() {
  echo "--ca $CERTS/ca.pem --cert $CERTS/admin.pem --key $CERTS/admin.key --timeout 3"
}
ping_node() { # node [expect] ; one attempt, quiet
  # shellcheck disable=SC2046
  "$PYTHON" "$HERE/kafka_ping.py" $(ping_args) --quiet --expect-brokers "${2:-3}" "$(host_of "$1"):$CLIENT_PORT" 2>/dev/null
}

fail_node() { # node reason
  log "node $1 ($(host_of "$1"):$CLIENT_PORT) did not become ready: $2"
  log "last 40 lines of $DIR/node-$1.log:"
  tail -40 "$DIR/node-$1.log" >&2 || true
}

wait_ready() { # timeout nodes... ; every node answers Metadata listing 3 brokers
  local timeout=$1; shift
  local deadline pending n still err
  deadline=$(( $(date +%s) + timeout ))
  pending="$*"
  while [ -n "$pending" ]; do
    still=""
    for n in $pending; do
      if [ -z "$(node_pid "$n")" ]; then
        fail_node "$n" "the broker process exited"
        return 1
      fi
      ping_node "$n" || still="$still $n"
    done
    pending="${still# }"
    [ -z "$pending" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for n in $pending; do
        # shellcheck disable=SC2046
        err=$("$PYTHON" "$HERE/kafka_ping.py" $(ping_args) --expect-brokers 3 "$(host_of "$n"):$CLIENT_PORT" 2>&1 >/dev/null || true)
        fail_node "$n" "no Metadata answer listing 3 brokers within $timeout s ($err)"
      done
      return 1
    fi
    sleep 0.5
  done
}

names_resolve() {
  local n ip
  for n in $NODES; do
    ip=$(getent ahostsv4 "$(host_of "$n")" | awk 'NR==1 {print $1}' || true)
    [ "$ip" = "$(ip_of "$n")" ] || return 1
  done
}
check_names() {
  names_resolve || die "b-N.msk.test does not resolve to 127.0.0.1N here; run under tests/with-hosts (e.g. tests/with-hosts $0 ${CMD:-start})"
}

create_acls() {
  local S=User:service R=User:readonly
  # shellcheck disable=SC2046
  "$PYTHON" "$HERE/kafka_acls.py" $(ping_args) "$(host_of 1):$CLIENT_PORT" \
    "topic:prefixed:svc.:$S:read" "topic:prefixed:svc.:$S:write" "topic:prefixed:svc.:$S:create" \
    "topic:prefixed:svc.:$S:describe" "topic:prefixed:svc.:$S:describe-configs" \
    "group:prefixed:svc.:$S:read" "group:prefixed:svc.:$S:describe" \
    "transactional-id:prefixed:svc.:$S:write" "transactional-id:prefixed:svc.:$S:describe" \
    "topic:literal:*:$R:read" "topic:literal:*:$R:describe" "topic:literal:*:$R:describe-configs" \
    "group:prefixed:ro.:$R:read" "group:prefixed:ro.:$R:describe"
}

client_properties() { # who
  cat >"$DIR/client-$1.properties" <<EOF
# Java client settings: mutual TLS as User:$1 (PEM, no JKS needed)
bootstrap.servers=$BOOTSTRAP
security.protocol=SSL
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.pem
ssl.keystore.type=PEM
ssl.keystore.location=$DIR/tls/$1-keystore.pem
EOF
}

scram_client_properties() { # who
  cat >"$DIR/client-scram-$1.properties" <<EOF
# Java client settings: SASL_SSL SCRAM-SHA-512 as User:$1 on port $SCRAM_PORT (no client certificate)
bootstrap.servers=$SCRAM_BOOTSTRAP
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$1" password="$(scram_password "$1")";
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.pem
EOF
  chmod 600 "$DIR/client-scram-$1.properties"
}

write_env() {
  local t=$1 f="$DIR/cluster.env" who
  client_properties admin
  client_properties service
  client_properties readonly
  for who in $SCRAM_USERS; do scram_client_properties "$who"; done
  cat >"$f.tmp" <<EOF
KTP_KAFKA_VERSION=$V
KTP_BOOTSTRAP=$BOOTSTRAP
KTP_BROKERS=1:b-1.msk.test:$CLIENT_PORT,2:b-2.msk.test:$CLIENT_PORT,3:b-3.msk.test:$CLIENT_PORT
KTP_CA=$CERTS/ca.pem
KTP_CA_KEY=$CERTS/ca.key
KTP_ADMIN_CERT=$CERTS/admin.pem
KTP_ADMIN_KEY=$CERTS/admin.key
KTP_SERVICE_CERT=$CERTS/service.pem
KTP_SERVICE_KEY=$CERTS/service.key
KTP_SERVICE_ENCRYPTED_KEY=$CERTS/service-encrypted.key
KTP_SERVICE_KEY_PASSWORD_FILE=$CERTS/service-encrypted.pass
KTP_READONLY_CERT=$CERTS/readonly.pem
KTP_READONLY_KEY=$CERTS/readonly.key
KTP_PROXY_SERVER_CERT=$CERTS/proxy-server.pem
KTP_PROXY_SERVER_KEY=$CERTS/proxy-server.key
KTP_ADMIN_PROPERTIES=$DIR/client-admin.properties
KTP_SERVICE_PROPERTIES=$DIR/client-service.properties
KTP_READONLY_PROPERTIES=$DIR/client-readonly.properties
KTP_CLUSTER_CLI=$HERE/cluster.sh
KTP_CLUSTER_DIR=$DIR
KTP_SCRAM_BOOTSTRAP=$SCRAM_BOOTSTRAP
KTP_SCRAM_ADMIN_PASSWORD_FILE=$DIR/tls/scram-admin.pass
KTP_SCRAM_SERVICE_PASSWORD_FILE=$DIR/tls/scram-service.pass
KTP_SCRAM_READONLY_PASSWORD_FILE=$DIR/tls/scram-readonly.pass
KTP_SCRAM_ADMIN_PROPERTIES=$DIR/client-scram-admin.properties
KTP_SCRAM_SERVICE_PROPERTIES=$DIR/client-scram-service.properties
KTP_KAFKA_PING=$HERE/kafka_ping.py
KTP_PYTHON=$PYTHON
KTP_JAVA=$JAVA
KTP_START_SECONDS=$t
EOF
  mv "$f.tmp" "$f"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  local t0 t1 t2; t0=$(now)
  check_names
  fetch
  pick_java
  log "starting Kafka $V (java $(java_feature "$JAVA"): $JAVA) in $DIR"
  rm -f "$DIR/cluster.env"
  GRACE=5 kill_nodes TERM $NODES
  rm -rf "$DIR/data" "$DIR/config" "$DIR/pids" "$DIR"/node-*.log "$DIR"/format-*.log
  mkdir -p "$DIR"
  write_configs
  format_storage
  t1=$(now)
  local n
  for n in $NODES; do launch_node "$n"; done
  if ! wait_ready "$START_TIMEOUT" $NODES; then
    log "stopping the cluster after the failed start"
    GRACE=5 kill_nodes TERM $NODES
    die "Kafka $V cluster did not start (logs: $DIR/node-N.log)"
  fi
  t2=$(now)
  if ! create_acls; then
    GRACE=5 kill_nodes TERM $NODES
    die "creating the ACLs failed"
  fi
  local total; total=$(since "$t0")
  write_env "$total"
  cat <<EOF
Kafka $V cluster ready in $total s (format $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, JVM start to all 3 brokers ready $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}') s)
  bootstrap:   $BOOTSTRAP   (names resolve under tests/with-hosts)
  client TLS:  CA $CERTS/ca.pem
               admin    cert $CERTS/admin.pem    key $CERTS/admin.key     (User:admin, super user)
               service  cert $CERTS/service.pem  key $CERTS/service.key   (User:service: topics/groups "svc.*")
               readonly cert $CERTS/readonly.pem key $CERTS/readonly.key  (User:readonly)
  Java client: $DIR/client-admin.properties (also client-service / client-readonly)
  SCRAM:       $SCRAM_BOOTSTRAP  SASL_SSL SCRAM-SHA-512, users admin service readonly,
               passwords $DIR/tls/scram-WHO.pass, Java client $DIR/client-scram-service.properties
  kcat:        kcat -b $BOOTSTRAP -X security.protocol=ssl -X ssl.ca.location=$CERTS/ca.pem -X ssl.certificate.location=$CERTS/admin.pem -X ssl.key.location=$CERTS/admin.key -L
  env file:    $DIR/cluster.env
EOF
}

cmd_stop() {
  rm -f "$DIR/cluster.env"
  GRACE=${KTP_STOP_GRACE:-10} kill_nodes TERM $NODES
  local left; left=$(marker_pids; port_pids)
  [ -z "$left" ] || die "processes still alive after stop: $left"
  log "stopped"
}

node_arg() {
  case "${1:-}" in 1|2|3) ;; *) die "node must be 1, 2 or 3" ;; esac
}

cmd_stop_broker() {
  node_arg "${1:-}"
  if [ "${2:-}" = "--kill" ]; then
    GRACE=10 kill_nodes KILL "$1"
  else
    GRACE=${KTP_STOP_GRACE:-30} kill_nodes TERM "$1"
  fi
  log "node $1 stopped"
}

cmd_start_broker() {
  node_arg "${1:-}"
  check_names
  fetch
  pick_java
  [ -f "$DIR/config/node-$1.properties" ] || die "no cluster in $DIR (run: cluster.sh start)"
  if [ -n "$(node_pid "$1")" ]; then
    log "node $1 already running"
  else
    launch_node "$1"
  fi
  local t0; t0=$(now)
  wait_ready "$START_TIMEOUT" "$1" || die "node $1 did not become ready"
  log "node $1 ready in $(since "$t0") s"
}

cmd_status() {
  local n p rc=0
  echo "Kafka $V, state dir $DIR"
  [ -f "$DIR/cluster.env" ] && echo "cluster.env: $DIR/cluster.env" || echo "cluster.env: absent (cluster not started)"
  names_resolve || echo "(b-N.msk.test does not resolve here: readiness not checked; use tests/with-hosts)"
  for n in $NODES; do
    p=$(node_pid "$n")
    if [ -z "$p" ]; then
      echo "node $n: not running"; rc=1
    elif ! names_resolve; then
      echo "node $n: pid $p"
    elif ping_node "$n" 1; then
      echo "node $n: pid $p, $(host_of "$n"):$CLIENT_PORT answers Metadata"
    else
      echo "node $n: pid $p, not answering"; rc=1
    fi
  done
  return $rc
}

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

cmd=${1:-}
CMD=$cmd
[ $# -gt 0 ] && shift
case "$cmd" in
  fetch) fetch; echo "$LIBS" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop ;;
  stop-broker) cmd_stop_broker "$@" ;;
  start-broker) cmd_start_broker "$@" ;;
  status) cmd_status ;;
  cli) cli "$@" ;;
  env) echo "$DIR/cluster.env" ;;
  classpath) fetch >&2; echo "$LIBS/*" ;;
  -h|--help|help|"") usage ;;
  *) usage; die "unknown command '$cmd'" ;;
esac
