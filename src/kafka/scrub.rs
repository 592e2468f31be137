//! Replaces upstream broker names and addresses in the free text of responses: error messages
//! and configuration values.
//!
//! Brokers put their own listener address into error messages: an authorization failure says
//! `Request(processor=0, connectionId=10.0.1.7:9094-10.0.9.2:51234-0-14, ...) needs DESCRIBE
//! permission`, and a DescribeConfigs of a broker lists its `advertised.listeners`. A client
//! must learn no upstream name or address from the proxy, not even from text, so every text
//! field of the responses in [`TEXT_CARRYING`] is searched for the names and addresses the
//! proxy knows ([`Scrubber`]), and each one found is replaced with the address clients use.
//!
//! **How.** A lenient [`Walker`] walk of the response, driven by a small schema per API and
//! version (the `Field` lists below, from the Kafka message specs), finds each non-null text
//! field; one Aho-Corasick pass over each (linear in its bytes, whatever the number of names)
//! finds the upstream names in it. The new frame is the original bytes with only the changed
//! strings (and their length prefixes) replaced, as the address rewrite splices
//! ([`super::rewrite`]); nothing is allocated when nothing is found. Null messages, the usual
//! case of a successful answer, cost one walk of the response, and only the APIs of the table
//! are walked at all. Produce is walked only when the walk the hot path already makes
//! ([`super::rewrite::response_needs`]) found a non-null error message; Fetch carries none.
//!
//! What is not text is never touched: ACL `host` patterns, resource names, principals.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AddRaftVoterResponse, AlterClientQuotasResponse, AlterConfigsResponse,
    AlterPartitionReassignmentsResponse, AlterShareGroupOffsetsResponse,
    AlterUserScramCredentialsResponse, ApiKey, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatResponse, ControllerRegistrationResponse, CreateAclsResponse,
    CreatePartitionsResponse, CreateTopicsResponse, DeleteAclsResponse,
    DeleteShareGroupOffsetsResponse, DeleteShareGroupStateResponse, DeleteTopicsResponse,
    DescribeAclsResponse, DescribeClientQuotasResponse, DescribeClusterResponse,
    DescribeConfigsResponse, DescribeGroupsResponse, DescribeProducersResponse,
    DescribeQuorumResponse, DescribeShareGroupOffsetsResponse,
    DescribeUserScramCredentialsResponse, ElectLeadersResponse, FindCoordinatorResponse,
    IncrementalAlterConfigsResponse, InitializeShareGroupStateResponse,
    ListPartitionReassignmentsResponse, ProduceResponse, ReadShareGroupStateResponse,
    ReadShareGroupStateSummaryResponse, RemoveRaftVoterResponse, SaslAuthenticateResponse,
    ShareAcknowledgeResponse, ShareFetchResponse, ShareGroupDescribeResponse,
    ShareGroupHeartbeatResponse, UnregisterBrokerResponse, UpdateFeaturesResponse,
    WriteShareGroupStateResponse,
};
use kafka_protocol::protocol::{Message, VersionRange};

use super::codec::{response_header_version, CodecError};
use super::frame::LENGTH_PREFIX;
use super::wire::{self, Walker, WireResult};

/// Most names and addresses a [`Scrubber`] searches for: the broker table (bounded by
/// --max-brokers), their resolved addresses, the bootstrap hosts and the controllers.
pub const MAX_NEEDLES: usize = 4096;

/// Longest name searched for (DNS names have at most 253 bytes).
pub const MAX_NEEDLE_LEN: usize = 255;

/// What a text becomes when its scrubbed form no longer fits its length prefix.
pub const WITHHELD: &str = "(message withheld by kafka-tls-proxy: it named an upstream broker)";

/// One upstream name or address to hide, and the ports it is known to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle {
    /// A host name or IP literal as upstream uses it.
    pub host: String,
    /// Its upstream port and the proxy port clients use for it, when known: `host:port` in a
    /// text becomes `advertised:proxy_port`.
    pub port: Option<(u16, u16)>,
}

/// The upstream names and addresses the proxy knows, and the multi-pattern search over them.
///
/// Built from the broker table, the resolver's answers and the settings by the connection
/// side, rebuilt only when those change; bounded by [`MAX_NEEDLES`].
#[derive(Debug, Clone)]
pub struct Scrubber {
    search: Option<AhoCorasick>,
    /// Per pattern: upstream port → proxy port.
    ports: Vec<Vec<(u16, u16)>>,
    /// The host clients use.
    advertised: Box<[u8]>,
    /// Length of the shortest name searched for: each replacement consumes at least this many
    /// bytes of the original, which bounds how much a scrub can grow a response.
    shortest: usize,
}

/// True for the bytes a host name or address continues with: a match next to one of them is
/// part of a longer name, not the name searched for.
fn continues(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

impl Scrubber {
    /// A scrubber replacing every `needles` host with `advertised` (and known ports with the
    /// proxy's). Empty and overlong names are dropped; beyond [`MAX_NEEDLES`] the rest are.
    pub fn new(advertised: &str, needles: impl IntoIterator<Item = Needle>) -> Self {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut ports: Vec<Vec<(u16, u16)>> = Vec::new();
        for n in needles {
            let host = n.host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || host.len() > MAX_NEEDLE_LEN {
                continue;
            }
            let key = host.to_ascii_lowercase();
            let i = match index.get(&key) {
                Some(&i) => i,
                None if patterns.len() >= MAX_NEEDLES => continue,
                None => {
                    index.insert(key.clone(), patterns.len());
                    patterns.push(key);
                    ports.push(Vec::new());
                    patterns.len() - 1
                }
            };
            if let Some(p) = n.port {
                // A host has few ports (one per listener); the cap keeps a hostile table small.
                if ports[i].len() < 8 && !ports[i].iter().any(|(up, _)| *up == p.0) {
                    ports[i].push(p);
                }
            }
        }
        let search = (!patterns.is_empty())
            .then(|| {
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .ascii_case_insensitive(true)
                    .build(&patterns)
                    .ok()
            })
            .flatten();
        let shortest = patterns.iter().map(String::len).min().unwrap_or(1).max(1);
        Self {
            search,
            ports,
            advertised: advertised.as_bytes().into(),
            shortest,
        }
    }

    /// The most bytes [`scrub_response`] may hold for a response of `len` bytes: the new
    /// texts it collects and the new frame, when every name it could match (at least
    /// `shortest` bytes each) becomes the advertised host with a port and a longer length
    /// prefix. The connection charges it to the budget before scrubbing.
    pub fn bound(&self, len: usize) -> usize {
        let matches = len / self.shortest + 1;
        let grown = len.saturating_add(matches.saturating_mul(self.advertised.len() + 6 + 5));
        grown.saturating_mul(2).saturating_add(LENGTH_PREFIX + 64)
    }

    /// How many names and addresses it searches for.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// True when it searches for nothing.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// `text` with every upstream name or address replaced, `None` when it names none. A name
    /// counts where it stands alone: not inside a longer name (`b-1.x` in `b-1.x.y`, or
    /// `10.0.0.1` in `10.0.0.12`). A name followed by `:port` of a known upstream port
    /// becomes `advertised:proxy_port`.
    pub fn scrub(&self, text: &[u8]) -> Option<Vec<u8>> {
        let search = self.search.as_ref()?;
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        for m in search.find_iter(text) {
            let (start, mut end) = (m.start(), m.end());
            if start > 0 && (continues(text[start - 1]) || text[start - 1] == b'.') {
                continue;
            }
            match text.get(end) {
                Some(&b) if continues(b) => continue,
                Some(b'.') if text.get(end + 1).is_some_and(|&b| continues(b)) => continue,
                _ => {}
            }
            let out = out.get_or_insert_with(|| Vec::with_capacity(text.len() + 16));
            out.extend_from_slice(&text[copied..start]);
            out.extend_from_slice(&self.advertised);
            if let Some((proxy_port, port_end)) = self.port_after(m.pattern().as_usize(), text, end)
            {
                out.push(b':');
                out.extend_from_slice(proxy_port.to_string().as_bytes());
                end = port_end;
            }
            copied = end;
        }
        let mut out = out?;
        out.extend_from_slice(&text[copied..]);
        Some(out)
    }

    /// When `text[at..]` is `:PORT` with PORT a known upstream port of pattern `i` (and no
    /// digit after it): the proxy port and the end of PORT.
    fn port_after(&self, i: usize, text: &[u8], at: usize) -> Option<(u16, usize)> {
        let ports = self.ports.get(i)?;
        if ports.is_empty() || text.get(at) != Some(&b':') {
            return None;
        }
        let digits = text[at + 1..]
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let port: u16 = std::str::from_utf8(&text[at + 1..at + 1 + digits])
            .ok()?
            .parse()
            .ok()?;
        let (_, proxy) = ports.iter().find(|(up, _)| *up == port)?;
        Some((*proxy, at + 1 + digits))
    }
}

/// The wire type of one response field, as far as a walk must know it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// int8 or boolean.
    I8,
    /// int16 (error codes).
    I16,
    /// int32.
    I32,
    /// int64.
    I64,
    /// A UUID (topic id).
    Uuid,
    /// A (nullable) string that is not free text (names, principals, ACL host patterns).
    Str,
    /// A nullable string of free text: searched and scrubbed.
    Text,
    /// An array of int32.
    I32s,
    /// An array of (nullable) strings that are not free text (topic names).
    Strs,
    /// (Nullable) bytes: skipped (member metadata, records, SASL bytes).
    Blob,
    /// An array of structs (nullable arrays walk the same: null counts as empty).
    Array(&'static [Field]),
    /// One struct in place (with its own tagged fields when flexible).
    Struct(&'static [Field]),
    /// A nullable struct: an int8 marker (negative: null), then the struct.
    OptStruct(&'static [Field]),
}

/// One field of a response and the versions that carry it (inclusive).
#[derive(Debug, Clone, Copy)]
struct Field {
    since: i16,
    until: i16,
    kind: Kind,
}

/// A field in every version.
const fn f(kind: Kind) -> Field {
    Field {
        since: 0,
        until: i16::MAX,
        kind,
    }
}

/// A field from version `since` on.
const fn since(since: i16, kind: Kind) -> Field {
    Field {
        since,
        until: i16::MAX,
        kind,
    }
}

/// A field up to version `until`.
const fn until(until: i16, kind: Kind) -> Field {
    Field {
        since: 0,
        until,
        kind,
    }
}

/// A field from version `since` up to version `until`.
const fn between(since: i16, until: i16, kind: Kind) -> Field {
    Field { since, until, kind }
}

use Kind::{Array, Blob, I32s, OptStruct, Str, Strs, Struct, Text, Uuid, I16, I32, I64, I8};

/// An API whose responses carry free text, and the versions the proxy can walk.
#[derive(Debug)]
pub struct TextCarrying {
    /// The API.
    pub key: ApiKey,
    /// Versions the schema covers (the ApiVersions answer is capped to them, like the address
    /// rewrite's; the minimum reaches below kafka-protocol's where Kafka 3.x brokers still
    /// answer older versions).
    pub versions: VersionRange,
    /// The first version whose response has a text field (from the schema): older versions
    /// carry nothing to scrub and pass as they are, even below `versions` (Produce v0-v2).
    pub text_from: i16,
    body: &'static [Field],
}

impl TextCarrying {
    const fn new(key: ApiKey, versions: VersionRange, body: &'static [Field]) -> Self {
        Self {
            key,
            versions,
            text_from: first_text(body),
            body,
        }
    }
}

/// The lowest version at which `fields` (or a struct inside them) has a text field.
const fn first_text(fields: &[Field]) -> i16 {
    let mut lowest = i16::MAX;
    let mut i = 0;
    while i < fields.len() {
        let field = fields[i];
        let at = match field.kind {
            Text => field.since,
            Array(sub) | Struct(sub) | OptStruct(sub) => {
                let inner = first_text(sub);
                if inner > field.since {
                    inner
                } else {
                    field.since
                }
            }
            _ => i16::MAX,
        };
        if at < lowest {
            lowest = at;
        }
        i += 1;
    }
    lowest
}

/// From version `min` to kafka-protocol's highest of the response `M`.
const fn upto<M: Message>(min: i16) -> VersionRange {
    VersionRange {
        min,
        max: M::VERSIONS.max,
    }
}

/// kafka-protocol's versions of the response `M`.
const fn all<M: Message>() -> VersionRange {
    M::VERSIONS
}

const ACL_DESCRIPTION: &[Field] = &[f(Str), f(Str), f(I8), f(I8)];
const DESCRIBE_ACLS_RESOURCE: &[Field] = &[f(I8), f(Str), since(1, I8), f(Array(ACL_DESCRIPTION))];
const DESCRIBE_ACLS: &[Field] = &[f(I32), f(I16), f(Text), f(Array(DESCRIBE_ACLS_RESOURCE))];
const CREATE_ACLS: &[Field] = &[f(I32), f(Array(&[f(I16), f(Text)]))];
const DELETE_ACLS_MATCHING: &[Field] = &[
    f(I16),
    f(Text),
    f(I8),
    f(Str),
    since(1, I8),
    f(Str),
    f(Str),
    f(I8),
    f(I8),
];
const DELETE_ACLS: &[Field] = &[
    f(I32),
    f(Array(&[f(I16), f(Text), f(Array(DELETE_ACLS_MATCHING))])),
];
const CONFIG_SYNONYM: &[Field] = &[f(Str), f(Text), f(I8)];
const DESCRIBE_CONFIGS_ENTRY: &[Field] = &[
    f(Str),
    f(Text), // the value: a broker's listeners name it
    f(I8),
    until(0, I8), // is_default
    since(1, I8), // config_source
    f(I8),
    since(1, Array(CONFIG_SYNONYM)),
    since(3, I8),
    since(3, Text), // documentation
];
const DESCRIBE_CONFIGS: &[Field] = &[
    f(I32),
    f(Array(&[
        f(I16),
        f(Text),
        f(I8),
        f(Str),
        f(Array(DESCRIBE_CONFIGS_ENTRY)),
    ])),
];
const REASSIGNMENT_PARTITION: &[Field] = &[f(I32), f(I16), f(Text)];
const ALTER_PARTITION_REASSIGNMENTS: &[Field] = &[
    f(I32),
    since(1, I8),
    f(I16),
    f(Text),
    f(Array(&[f(Str), f(Array(REASSIGNMENT_PARTITION))])),
];
const LIST_PARTITION_REASSIGNMENTS: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(Array(&[
        f(Str),
        f(Array(&[f(I32), f(I32s), f(I32s), f(I32s)])),
    ])),
];
const ELECT_LEADERS: &[Field] = &[
    f(I32),
    since(1, I16),
    f(Array(&[f(Str), f(Array(&[f(I32), f(I16), f(Text)]))])),
];
const CREATE_TOPICS_CONFIG: &[Field] = &[f(Str), f(Text), f(I8), f(I8), f(I8)];
const CREATE_TOPICS: &[Field] = &[
    since(2, I32),
    f(Array(&[
        f(Str),
        since(7, Uuid),
        f(I16),
        since(1, Text),
        since(5, I32),
        since(5, I16),
        since(5, Array(CREATE_TOPICS_CONFIG)),
    ])),
];
const DELETE_TOPICS: &[Field] = &[
    since(1, I32),
    f(Array(&[f(Str), since(6, Uuid), f(I16), since(5, Text)])),
];
const CREATE_PARTITIONS: &[Field] = &[f(I32), f(Array(&[f(Str), f(I16), f(Text)]))];
const ALTER_CONFIGS: &[Field] = &[f(I32), f(Array(&[f(I16), f(Text), f(I8), f(Str)]))];
const DESCRIBE_USER_SCRAM: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(Array(&[
        f(Str),
        f(I16),
        f(Text),
        f(Array(&[f(I8), f(I32)])),
    ])),
];
const ALTER_USER_SCRAM: &[Field] = &[f(I32), f(Array(&[f(Str), f(I16), f(Text)]))];
const UPDATE_FEATURES: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    until(1, Array(&[f(Str), f(I16), f(Text)])),
];

const FIND_COORDINATOR: &[Field] = &[
    since(1, I32),
    until(3, I16),
    between(1, 3, Text),
    until(3, I32),
    until(3, Str), // host: the address rewrite's
    until(3, I32),
    since(4, Array(&[f(Str), f(I32), f(Str), f(I32), f(I16), f(Text)])),
];
const DESCRIBE_CLUSTER: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    since(1, I8),
    f(Str),
    f(I32),
    f(Array(&[f(I32), f(Str), f(I32), f(Str), since(2, I8)])),
    f(I32),
];
const PRODUCE_PARTITION: &[Field] = &[
    f(I32),
    f(I16),
    f(I64),
    since(2, I64),
    since(5, I64),
    since(8, Array(&[f(I32), f(Text)])), // record_errors: batch_index_error_message
    since(8, Text),
];
const PRODUCE: &[Field] = &[
    f(Array(&[
        until(12, Str),
        since(13, Uuid),
        f(Array(PRODUCE_PARTITION)),
    ])),
    f(I32),
];

const REPLICA_STATE: &[Field] = &[f(I32), since(2, Uuid), f(I64), since(1, I64), since(1, I64)];
const DESCRIBE_QUORUM_PARTITION: &[Field] = &[
    f(I32),
    f(I16),
    since(2, Text),
    f(I32),
    f(I32),
    f(I64),
    f(Array(REPLICA_STATE)),
    f(Array(REPLICA_STATE)),
];
const DESCRIBE_QUORUM: &[Field] = &[
    f(I16),
    since(2, Text),
    f(Array(&[f(Str), f(Array(DESCRIBE_QUORUM_PARTITION))])),
    // nodes: listeners' name, host (the rewrite's), uint16 port
    since(2, Array(&[f(I32), f(Array(&[f(Str), f(Str), f(I16)]))])),
];

/// An error code and its message: the whole body of several controller and broker answers
/// (AddRaftVoter, RemoveRaftVoter, ControllerRegistration, UnregisterBroker).
const ERROR_ONLY: &[Field] = &[f(I32), f(I16), f(Text)];
const QUOTA_ENTITY: &[Field] = &[f(Str), f(Str)];
const ALTER_CLIENT_QUOTAS: &[Field] =
    &[f(I32), f(Array(&[f(I16), f(Text), f(Array(QUOTA_ENTITY))]))];
const DESCRIBE_CLIENT_QUOTAS: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(Array(&[
        f(Array(QUOTA_ENTITY)),
        f(Array(&[f(Str), f(I64)])), // key, float64 value
    ])),
];
const PARTITION_ERROR: &[Field] = &[f(I32), f(I16), f(Text)];
const ALTER_SHARE_GROUP_OFFSETS: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(Array(&[f(Str), f(Uuid), f(Array(PARTITION_ERROR))])),
];
const DELETE_SHARE_GROUP_OFFSETS: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(Array(&[f(Str), f(Uuid), f(I16), f(Text)])),
];
const DESCRIBE_SHARE_GROUP_OFFSETS: &[Field] = &[
    f(I32),
    f(Array(&[
        f(Str),
        f(Array(&[
            f(Str),
            f(Uuid),
            f(Array(&[f(I32), f(I64), f(I32), f(I16), f(Text)])),
        ])),
        f(I16),
        f(Text),
    ])),
];
/// Initialize/Write/DeleteShareGroupState: per topic id, per partition an error.
const SHARE_GROUP_STATE: &[Field] = &[f(Array(&[f(Uuid), f(Array(PARTITION_ERROR))]))];
const READ_SHARE_GROUP_STATE: &[Field] = &[f(Array(&[
    f(Uuid),
    f(Array(&[
        f(I32),
        f(I16),
        f(Text),
        f(I32),
        f(I64),
        f(Array(&[f(I64), f(I64), f(I8), f(I16)])),
    ])),
]))];
const READ_SHARE_GROUP_STATE_SUMMARY: &[Field] = &[f(Array(&[
    f(Uuid),
    f(Array(&[f(I32), f(I16), f(Text), f(I32), f(I32), f(I64)])),
]))];
const DESCRIBE_PRODUCERS: &[Field] = &[
    f(I32),
    f(Array(&[
        f(Str),
        f(Array(&[
            f(I32),
            f(I16),
            f(Text),
            f(Array(&[f(I64), f(I32), f(I32), f(I64), f(I32), f(I64)])),
        ])),
    ])),
];
/// A group member's assignment (ConsumerGroupDescribe, ShareGroupDescribe).
const GROUP_ASSIGNMENT: &[Field] = &[f(Array(&[f(Uuid), f(Str), f(I32s)]))];
const CONSUMER_GROUP_MEMBER: &[Field] = &[
    f(Str),
    f(Str),
    f(Str),
    f(I32),
    f(Str),
    f(Str), // client_host: the client's, not a broker's
    f(Strs),
    f(Str),
    f(Struct(GROUP_ASSIGNMENT)),
    f(Struct(GROUP_ASSIGNMENT)),
    since(1, I8),
];
const CONSUMER_GROUP_DESCRIBE: &[Field] = &[
    f(I32),
    f(Array(&[
        f(I16),
        f(Text),
        f(Str),
        f(Str),
        f(I32),
        f(I32),
        f(Str),
        f(Array(CONSUMER_GROUP_MEMBER)),
        f(I32),
    ])),
];
const SHARE_GROUP_MEMBER: &[Field] = &[
    f(Str),
    f(Str),
    f(I32),
    f(Str),
    f(Str), // client_host
    f(Strs),
    f(Struct(GROUP_ASSIGNMENT)),
];
const SHARE_GROUP_DESCRIBE: &[Field] = &[
    f(I32),
    f(Array(&[
        f(I16),
        f(Text),
        f(Str),
        f(Str),
        f(I32),
        f(I32),
        f(Str),
        f(Array(SHARE_GROUP_MEMBER)),
        f(I32),
    ])),
];
/// ConsumerGroupHeartbeat, ShareGroupHeartbeat.
const GROUP_HEARTBEAT: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(Str),
    f(I32),
    f(I32),
    f(OptStruct(&[f(Array(&[f(Uuid), f(I32s)]))])),
];
const DESCRIBE_GROUPS: &[Field] = &[
    since(1, I32),
    f(Array(&[
        f(I16),
        since(6, Text),
        f(Str),
        f(Str),
        f(Str),
        f(Str),
        f(Array(&[
            f(Str),
            since(4, Str),
            f(Str),
            f(Str), // client_host: the client's, not a broker's
            f(Blob),
            f(Blob),
        ])),
        since(3, I32),
    ])),
];
const SASL_AUTHENTICATE: &[Field] = &[f(I16), f(Text), f(Blob), since(1, I64)];
/// `node_endpoints[]` of ShareFetch and ShareAcknowledge (the address rewrite's).
const NODE_ENDPOINT: &[Field] = &[f(I32), f(Str), f(I32), f(Str)];
const LEADER: &[Field] = &[f(I32), f(I32)];
const SHARE_FETCH: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(I32),
    f(Array(&[
        f(Uuid),
        f(Array(&[
            f(I32),
            f(I16),
            f(Text),
            f(I16),
            f(Text), // acknowledge_error_message
            f(Struct(LEADER)),
            f(Blob),
            f(Array(&[f(I64), f(I64), f(I16)])),
        ])),
    ])),
    f(Array(NODE_ENDPOINT)),
];
const SHARE_ACKNOWLEDGE: &[Field] = &[
    f(I32),
    f(I16),
    f(Text),
    f(Array(&[
        f(Uuid),
        f(Array(&[f(I32), f(I16), f(Text), f(Struct(LEADER))])),
    ])),
    f(Array(NODE_ENDPOINT)),
];

/// Every API whose responses carry free text (error messages, configuration values) the proxy
/// scrubs, with its schema: the one list, checked against kafka-protocol's generated responses
/// by a test (every response with a message field is here). Six of them also carry broker
/// addresses ([`super::rewrite::INSPECTED`]: FindCoordinator, DescribeCluster, DescribeQuorum,
/// Produce, ShareFetch, ShareAcknowledge): their text is scrubbed after the address rewrite.
/// Metadata and Fetch, the other address-carrying APIs, carry no free text. A Produce response
/// is scrubbed only when one of its error messages is non-null
/// ([`super::rewrite::response_needs`]), so a Produce without errors costs nothing more than
/// the walk the address rewrite already makes.
pub static TEXT_CARRYING: [TextCarrying; 42] = [
    TextCarrying::new(
        ApiKey::DescribeAcls,
        upto::<DescribeAclsResponse>(0),
        DESCRIBE_ACLS,
    ),
    TextCarrying::new(
        ApiKey::CreateAcls,
        upto::<CreateAclsResponse>(0),
        CREATE_ACLS,
    ),
    TextCarrying::new(
        ApiKey::DeleteAcls,
        upto::<DeleteAclsResponse>(0),
        DELETE_ACLS,
    ),
    TextCarrying::new(
        ApiKey::DescribeConfigs,
        upto::<DescribeConfigsResponse>(0),
        DESCRIBE_CONFIGS,
    ),
    TextCarrying::new(
        ApiKey::AlterPartitionReassignments,
        upto::<AlterPartitionReassignmentsResponse>(0),
        ALTER_PARTITION_REASSIGNMENTS,
    ),
    TextCarrying::new(
        ApiKey::ListPartitionReassignments,
        upto::<ListPartitionReassignmentsResponse>(0),
        LIST_PARTITION_REASSIGNMENTS,
    ),
    TextCarrying::new(
        ApiKey::ElectLeaders,
        upto::<ElectLeadersResponse>(0),
        ELECT_LEADERS,
    ),
    TextCarrying::new(
        ApiKey::CreateTopics,
        upto::<CreateTopicsResponse>(0),
        CREATE_TOPICS,
    ),
    TextCarrying::new(
        ApiKey::DeleteTopics,
        upto::<DeleteTopicsResponse>(0),
        DELETE_TOPICS,
    ),
    TextCarrying::new(
        ApiKey::CreatePartitions,
        upto::<CreatePartitionsResponse>(0),
        CREATE_PARTITIONS,
    ),
    TextCarrying::new(
        ApiKey::AlterConfigs,
        upto::<AlterConfigsResponse>(0),
        ALTER_CONFIGS,
    ),
    TextCarrying::new(
        ApiKey::IncrementalAlterConfigs,
        upto::<IncrementalAlterConfigsResponse>(0),
        ALTER_CONFIGS,
    ),
    TextCarrying::new(
        ApiKey::DescribeUserScramCredentials,
        upto::<DescribeUserScramCredentialsResponse>(0),
        DESCRIBE_USER_SCRAM,
    ),
    TextCarrying::new(
        ApiKey::AlterUserScramCredentials,
        upto::<AlterUserScramCredentialsResponse>(0),
        ALTER_USER_SCRAM,
    ),
    TextCarrying::new(
        ApiKey::UpdateFeatures,
        upto::<UpdateFeaturesResponse>(0),
        UPDATE_FEATURES,
    ),
    TextCarrying::new(
        ApiKey::AlterClientQuotas,
        all::<AlterClientQuotasResponse>(),
        ALTER_CLIENT_QUOTAS,
    ),
    TextCarrying::new(
        ApiKey::DescribeClientQuotas,
        all::<DescribeClientQuotasResponse>(),
        DESCRIBE_CLIENT_QUOTAS,
    ),
    TextCarrying::new(
        ApiKey::DescribeGroups,
        all::<DescribeGroupsResponse>(),
        DESCRIBE_GROUPS,
    ),
    TextCarrying::new(
        ApiKey::DescribeProducers,
        all::<DescribeProducersResponse>(),
        DESCRIBE_PRODUCERS,
    ),
    TextCarrying::new(
        ApiKey::ConsumerGroupHeartbeat,
        all::<ConsumerGroupHeartbeatResponse>(),
        GROUP_HEARTBEAT,
    ),
    TextCarrying::new(
        ApiKey::ConsumerGroupDescribe,
        all::<ConsumerGroupDescribeResponse>(),
        CONSUMER_GROUP_DESCRIBE,
    ),
    TextCarrying::new(
        ApiKey::ShareGroupHeartbeat,
        all::<ShareGroupHeartbeatResponse>(),
        GROUP_HEARTBEAT,
    ),
    TextCarrying::new(
        ApiKey::ShareGroupDescribe,
        all::<ShareGroupDescribeResponse>(),
        SHARE_GROUP_DESCRIBE,
    ),
    TextCarrying::new(
        ApiKey::AlterShareGroupOffsets,
        all::<AlterShareGroupOffsetsResponse>(),
        ALTER_SHARE_GROUP_OFFSETS,
    ),
    TextCarrying::new(
        ApiKey::DeleteShareGroupOffsets,
        all::<DeleteShareGroupOffsetsResponse>(),
        DELETE_SHARE_GROUP_OFFSETS,
    ),
    TextCarrying::new(
        ApiKey::DescribeShareGroupOffsets,
        all::<DescribeShareGroupOffsetsResponse>(),
        DESCRIBE_SHARE_GROUP_OFFSETS,
    ),
    TextCarrying::new(
        ApiKey::InitializeShareGroupState,
        all::<InitializeShareGroupStateResponse>(),
        SHARE_GROUP_STATE,
    ),
    TextCarrying::new(
        ApiKey::ReadShareGroupState,
        all::<ReadShareGroupStateResponse>(),
        READ_SHARE_GROUP_STATE,
    ),
    TextCarrying::new(
        ApiKey::ReadShareGroupStateSummary,
        all::<ReadShareGroupStateSummaryResponse>(),
        READ_SHARE_GROUP_STATE_SUMMARY,
    ),
    TextCarrying::new(
        ApiKey::WriteShareGroupState,
        all::<WriteShareGroupStateResponse>(),
        SHARE_GROUP_STATE,
    ),
    TextCarrying::new(
        ApiKey::DeleteShareGroupState,
        all::<DeleteShareGroupStateResponse>(),
        SHARE_GROUP_STATE,
    ),
    TextCarrying::new(
        ApiKey::SaslAuthenticate,
        all::<SaslAuthenticateResponse>(),
        SASL_AUTHENTICATE,
    ),
    TextCarrying::new(
        ApiKey::AddRaftVoter,
        all::<AddRaftVoterResponse>(),
        ERROR_ONLY,
    ),
    TextCarrying::new(
        ApiKey::RemoveRaftVoter,
        all::<RemoveRaftVoterResponse>(),
        ERROR_ONLY,
    ),
    TextCarrying::new(
        ApiKey::ControllerRegistration,
        all::<ControllerRegistrationResponse>(),
        ERROR_ONLY,
    ),
    TextCarrying::new(
        ApiKey::UnregisterBroker,
        all::<UnregisterBrokerResponse>(),
        ERROR_ONLY,
    ),
    TextCarrying::new(
        ApiKey::FindCoordinator,
        upto::<FindCoordinatorResponse>(0),
        FIND_COORDINATOR,
    ),
    TextCarrying::new(
        ApiKey::DescribeCluster,
        upto::<DescribeClusterResponse>(0),
        DESCRIBE_CLUSTER,
    ),
    TextCarrying::new(
        ApiKey::DescribeQuorum,
        upto::<DescribeQuorumResponse>(0),
        DESCRIBE_QUORUM,
    ),
    TextCarrying::new(ApiKey::Produce, upto::<ProduceResponse>(3), PRODUCE),
    TextCarrying::new(ApiKey::ShareFetch, all::<ShareFetchResponse>(), SHARE_FETCH),
    TextCarrying::new(
        ApiKey::ShareAcknowledge,
        all::<ShareAcknowledgeResponse>(),
        SHARE_ACKNOWLEDGE,
    ),
];

/// The [`TEXT_CARRYING`] entry of an api key, if its responses carry free text.
pub fn text_carrying(api_key: i16) -> Option<&'static TextCarrying> {
    TEXT_CARRYING.iter().find(|t| t.key as i16 == api_key)
}

/// True when the response to `api_key` at `version` may carry free text to scrub; decided
/// once per request, in its plan.
pub fn carries_text(api_key: i16, version: i16) -> bool {
    text_carrying(api_key).is_some_and(|t| {
        version >= t.text_from && (t.versions.min..=t.versions.max).contains(&version)
    })
}

/// Walks `fields` at `version`, calling `text` with each non-null text field's span (length
/// prefix and bytes) and the offset of its bytes.
fn walk(
    w: &mut Walker<'_>,
    fields: &[Field],
    version: i16,
    flex: bool,
    text: &mut dyn FnMut(Range<usize>, usize),
) -> WireResult<()> {
    for field in fields {
        if version < field.since || version > field.until {
            continue;
        }
        match field.kind {
            I8 => w.skip(1)?,
            I16 => w.skip(2)?,
            I32 => w.skip(4)?,
            I64 => w.skip(8)?,
            Uuid => w.skip(16)?,
            Str => w.string(flex)?,
            Text => {
                if let Some((span, at)) = w.text_span(flex)? {
                    text(span, at);
                }
            }
            I32s => w.fixed_array(flex, 4)?,
            Strs => {
                for _ in 0..w.nullable_array(flex)? {
                    w.string(flex)?;
                }
            }
            Blob => w.bytes(flex)?,
            Array(sub) => {
                let n = w.nullable_array(flex)?;
                for _ in 0..n {
                    walk(w, sub, version, flex, text)?;
                }
            }
            Struct(sub) => walk(w, sub, version, flex, text)?,
            OptStruct(sub) => {
                if w.i8()? >= 0 {
                    walk(w, sub, version, flex, text)?;
                }
            }
        }
    }
    if flex {
        w.tagged()?;
    }
    Ok(())
}

/// Scrubs one response of a [`TEXT_CARRYING`] API: `payload` is the response without its length
/// prefix (for an API that also carries addresses, after their rewrite). `Ok(None)`: forward the original bytes (no text names an upstream host, or the api
/// key carries no text); `Ok(Some(frame))`: the complete new frame, length prefix included.
/// Errors for a version outside the schema or bytes that do not walk.
pub fn scrub_response(
    api_key: i16,
    version: i16,
    payload: &[u8],
    scrubber: &Scrubber,
) -> Result<Option<Bytes>, CodecError> {
    match text_carrying(api_key) {
        Some(t) => scrub_with(t, api_key, version, payload, scrubber),
        None => Ok(None),
    }
}

fn scrub_with(
    t: &TextCarrying,
    api_key: i16,
    version: i16,
    payload: &[u8],
    scrubber: &Scrubber,
) -> Result<Option<Bytes>, CodecError> {
    if version < t.versions.min || version > t.versions.max {
        return Err(CodecError::UnsupportedVersion { api_key, version });
    }
    let decode_error = |reason: &str| CodecError::Decode {
        api_key,
        version,
        reason: reason.to_string(),
    };
    let flex = wire::flexible(t.key, version);
    // (span to replace, new bytes of the text), in increasing order.
    let mut changes: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut w = Walker::new(payload);
    w.response_header(response_header_version(api_key, version))
        .and_then(|()| {
            walk(&mut w, t.body, version, flex, &mut |span, at| {
                if let Some(new) = scrubber.scrub(&payload[at..span.end]) {
                    changes.push((span, new));
                }
            })
        })
        .and_then(|()| w.end())
        .map_err(decode_error)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let growth: usize = changes.iter().map(|(_, new)| new.len() + 5).sum();
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX + payload.len() + growth);
    out.put_i32(0);
    let mut copied = 0;
    for (span, mut new) in changes {
        out.put_slice(&payload[copied..span.start]);
        if !flex && new.len() > i16::MAX as usize {
            new = WITHHELD.as_bytes().to_vec();
        }
        if flex {
            let len = u32::try_from(new.len() + 1).map_err(|_| decode_error("text too long"))?;
            let mut varint = [0; 5];
            let n = wire::put_uvarint(&mut varint, len);
            out.put_slice(&varint[..n]);
        } else {
            out.put_i16(new.len() as i16);
        }
        out.put_slice(&new);
        copied = span.end;
    }
    out.put_slice(&payload[copied..]);
    let len = i32::try_from(out.len() - LENGTH_PREFIX).map_err(|_| CodecError::Encode {
        api_key,
        version,
        reason: "frame too long".into(),
    })?;
    out[..LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(Some(out.freeze()))
}

#[cfg(test)]
#[path = "scrub_tests.rs"]
mod tests;
