//! Walkers over the requests the identity policy ([`crate::policy`]) denies or audits, and over
//! the responses it audits.
//!
//! Most requests pass the proxy as the bytes the client sent. The policy reads a request only
//! when it denies it (to answer with that API's own error response, which echoes the request's
//! topics, partitions, groups or resources) or when the request changes the cluster (to name
//! what it changes in the audit log, and what the broker answered). Those requests are rare and
//! small; Produce and Fetch are never read on an allowed path.
//!
//! Nothing here decodes with kafka-protocol, whose decode sizes `Vec::with_capacity` from array
//! counts on the wire: every field is read through [`Walker`], the one bounds-checked reader,
//! with the primitives of [`Reader`] on top of it (every count and length must fit the bytes
//! that remain, so nothing here allocates more than the frame holds). A request is read as the
//! broker reads it: one message at its version from the start of the body, and bytes after
//! that message are ignored. Kafka's `RequestContext.parseRequest` reads the message with the
//! generated `read` and never checks that the buffer was used up, so a request with trailing
//! bytes still acts on the cluster: refusing it here would only blind the audit (its
//! resources would read "(unreadable)") and turn its denial into a closed connection.
//!
//! Only what the policy needs is kept. Secrets a request carries (SCRAM salts and salted
//! passwords, delegation token HMACs) and configuration values are stepped over, never copied,
//! so they cannot reach a log line.
//!
//! Versions: every version kafka-protocol has of each request (the policy's table states which
//! of them the proxy also answers), and Produce v0-v2, which Kafka 3.x brokers still accept.

use std::fmt::Write as _;

use kafka_protocol::messages::ApiKey;

use super::wire::{self, Walker, WireResult};

/// Entries an audit list holds before the rest is only counted: a CreateTopics of ten thousand
/// topics makes one readable log line, not a megabyte.
pub const AUDIT_CAP: usize = 50;

/// Longest name an audit entry shows, in characters (Kafka topic names have at most 249).
const NAME_CAP: usize = 256;

/// A nil topic id: the request names the topic by name.
pub const NIL_ID: [u8; 16] = [0; 16];

/// The primitives of one message at one version, on top of [`Walker`]: Kafka strings, arrays,
/// integers and tagged fields, compact in flexible versions (`flex`).
pub struct Reader<'a> {
    w: Walker<'a>,
    flex: bool,
}

impl<'a> Reader<'a> {
    /// Reads `buf` as a message whose version is flexible (`flex`) or not.
    pub fn new(buf: &'a [u8], flex: bool) -> Self {
        Self {
            w: Walker::new(buf),
            flex,
        }
    }

    fn take<const N: usize>(&mut self) -> WireResult<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.w.take(N)?);
        Ok(out)
    }

    /// An int8.
    pub fn i8(&mut self) -> WireResult<i8> {
        Ok(i8::from_be_bytes(self.take()?))
    }

    /// A boolean (any non-zero byte is true, as Kafka reads it).
    pub fn bool(&mut self) -> WireResult<bool> {
        Ok(self.take::<1>()?[0] != 0)
    }

    /// A big-endian int16.
    pub fn i16(&mut self) -> WireResult<i16> {
        self.w.i16()
    }

    /// A big-endian int32.
    pub fn i32(&mut self) -> WireResult<i32> {
        self.w.i32()
    }

    /// A big-endian int64.
    pub fn i64(&mut self) -> WireResult<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    /// A big-endian IEEE 754 float64.
    pub fn f64(&mut self) -> WireResult<f64> {
        Ok(f64::from_be_bytes(self.take()?))
    }

    /// A UUID (topic id).
    pub fn uuid(&mut self) -> WireResult<[u8; 16]> {
        self.take()
    }

    /// The length of a nullable string (`int32_len` false) or byte array: compact in flexible
    /// versions, else int16 / int32. `None` for null; it must fit the remaining bytes.
    fn len(&mut self, int32_len: bool) -> WireResult<Option<usize>> {
        let len: i64 = if self.flex {
            i64::from(self.w.uvarint()?) - 1
        } else if int32_len {
            i64::from(self.w.i32()?)
        } else {
            i64::from(self.w.i16()?)
        };
        match len {
            -1 => Ok(None),
            n if n < 0 => Err("negative length"),
            n => self.w.len_in_range(n as u64).map(Some),
        }
    }

    /// The bytes of a nullable string, `None` for null, not checked for UTF-8.
    pub fn nullable_raw(&mut self) -> WireResult<Option<&'a [u8]>> {
        match self.len(false)? {
            None => Ok(None),
            Some(n) => self.w.take(n).map(Some),
        }
    }

    /// The bytes of a non-nullable string, not checked for UTF-8.
    pub fn raw(&mut self) -> WireResult<&'a [u8]> {
        self.nullable_raw()?.ok_or("null for a non-nullable string")
    }

    /// A nullable string, which must be UTF-8.
    pub fn nullable_string(&mut self) -> WireResult<Option<String>> {
        self.nullable_raw()?.map(utf8).transpose()
    }

    /// A non-nullable string, which must be UTF-8.
    pub fn string(&mut self) -> WireResult<String> {
        utf8(self.raw()?)
    }

    /// A (nullable) string, stepped over.
    pub fn skip_string(&mut self) -> WireResult<()> {
        self.nullable_raw().map(|_| ())
    }

    /// A (nullable) byte array, stepped over without being copied (secrets, record sets).
    pub fn skip_bytes(&mut self) -> WireResult<()> {
        if let Some(n) = self.len(true)? {
            self.w.skip(n)?;
        }
        Ok(())
    }

    /// The element count of a nullable array, `None` for null. Every element takes at least
    /// one byte, so the count must not exceed the remaining bytes.
    pub fn nullable_count(&mut self) -> WireResult<Option<usize>> {
        let count: i64 = if self.flex {
            i64::from(self.w.uvarint()?) - 1
        } else {
            i64::from(self.w.i32()?)
        };
        match count {
            -1 => Ok(None),
            n if n < 0 => Err("negative array count"),
            n => self.w.len_in_range(n as u64).map(Some),
        }
    }

    /// The element count of a non-nullable array.
    pub fn count(&mut self) -> WireResult<usize> {
        self.nullable_count()?
            .ok_or("null for a non-nullable array")
    }

    /// A nullable array of int32, `None` for null.
    pub fn nullable_i32s(&mut self) -> WireResult<Option<Vec<i32>>> {
        let Some(n) = self.nullable_count()? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.i32()?);
        }
        Ok(Some(out))
    }

    /// A non-nullable array of int32.
    pub fn i32s(&mut self) -> WireResult<Vec<i32>> {
        self.nullable_i32s()?.ok_or("null for a non-nullable array")
    }

    /// The tagged fields of a struct in a flexible version, stepped over by their sizes.
    pub fn tags(&mut self) -> WireResult<()> {
        if self.flex {
            self.w.tagged()
        } else {
            Ok(())
        }
    }

    /// How many bytes were read so far: the offset of the next field in the buffer.
    pub fn pos(&self) -> usize {
        self.w.pos()
    }

    /// Errors unless every byte was read.
    pub fn end(&self) -> WireResult<()> {
        self.w.end()
    }
}

fn utf8(bytes: &[u8]) -> WireResult<String> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| "string is not UTF-8")
}

/// The body of a request frame (length prefix included): what follows the request header of
/// `api_key` at `version` (client id, and tagged fields in header v2). The length prefix must
/// match the frame.
pub fn request_body(frame: &[u8], api_key: i16, version: i16) -> WireResult<&[u8]> {
    let mut w = Walker::new(frame);
    let len = w.i32()?;
    if usize::try_from(len).ok() != Some(frame.len() - 4) {
        return Err("length prefix does not match the frame");
    }
    w.skip(8)?; // api key, api version, correlation id
    w.request_header_rest(super::codec::request_header_version(api_key, version))?;
    let rest = w.take(0)?;
    // The walker hands out subslices of `frame`: the empty one it returns starts at the body.
    let at = rest.as_ptr() as usize - frame.as_ptr() as usize;
    Ok(&frame[at..])
}

/// A topic a request names, by name or (Produce v13+, DeleteTopics v6+) by id, with the
/// partitions it names (empty where the request names none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topic {
    /// The name; empty when the request names the topic by id only.
    pub name: String,
    /// The topic id; [`NIL_ID`] when the request names the topic by name.
    pub id: [u8; 16],
    /// Partition indexes, in request order.
    pub partitions: Vec<i32>,
}

impl Topic {
    fn named(name: String) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }
}

/// An ACL binding (CreateAcls) or filter (DeleteAcls; `None` matches any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// Resource type (2 topic, 3 group, 4 cluster, 5 transactional id, 6 token, 7 user).
    pub resource_type: i8,
    /// Resource name.
    pub name: Option<String>,
    /// Pattern type (3 literal, 4 prefixed; 1 any, 2 match in filters).
    pub pattern_type: i8,
    /// Principal, e.g. `User:alice`.
    pub principal: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Operation (3 read, 4 write, ...).
    pub operation: i8,
    /// Permission (2 deny, 3 allow).
    pub permission: i8,
}

/// A configuration resource of AlterConfigs / IncrementalAlterConfigs with the names of the
/// configuration keys it changes (values are never kept: some are secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    /// Resource type (2 topic, 4 broker, 8 broker logger, 16 client metrics, 32 group).
    pub resource_type: i8,
    /// Resource name.
    pub name: String,
    /// Configuration keys, with the operation in IncrementalAlterConfigs (0 set, 1 delete,
    /// 2 append, 3 subtract).
    pub keys: Vec<(String, Option<i8>)>,
}

/// One entry of AlterClientQuotas.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEntry {
    /// The entity: (entity type, entity name; `None` for the default entity).
    pub entity: Vec<(String, Option<String>)>,
    /// The quota changes: (key, value, remove).
    pub ops: Vec<(String, f64, bool)>,
}

/// Topics with an offset per partition: (topic, [(partition, offset)]) (DeleteRecords,
/// AlterShareGroupOffsets).
pub type PartitionOffsets = Vec<(String, Vec<(i32, i64)>)>;

/// Topics with target replicas per partition: (topic, [(partition, replicas; `None`
/// cancels)]) (AlterPartitionReassignments).
pub type Reassignments = Vec<(String, Vec<(i32, Option<Vec<i32>>)>)>;

/// A request the policy read: what its denial response echoes and what its audit line names.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Produce: acks decides whether a denial can be answered at all.
    Produce {
        /// Transactional id (v3+).
        transactional_id: Option<String>,
        /// 0: the broker sends no response.
        acks: i16,
        /// Topics and partitions written to.
        topics: Vec<Topic>,
    },
    /// CreateTopics.
    CreateTopics {
        /// Names of the topics to create.
        topics: Vec<String>,
        /// Nothing is created, only validated.
        validate_only: bool,
    },
    /// DeleteTopics: names (v1-v5), or names or ids (v6+).
    DeleteTopics(Vec<Topic>),
    /// CreatePartitions: (topic, new partition count).
    CreatePartitions {
        /// Topics and the partition count each should reach.
        topics: Vec<(String, i32)>,
        /// Nothing is created, only validated.
        validate_only: bool,
    },
    /// DeleteRecords: (topic, [(partition, delete before this offset)]).
    DeleteRecords(PartitionOffsets),
    /// CreateAcls: the bindings to create.
    CreateAcls(Vec<Acl>),
    /// DeleteAcls: the filters of the bindings to delete.
    DeleteAcls(Vec<Acl>),
    /// AlterConfigs (`keys` without operations) or IncrementalAlterConfigs.
    AlterConfigs {
        /// Resources and the keys changed.
        resources: Vec<ConfigResource>,
        /// Nothing is changed, only validated.
        validate_only: bool,
    },
    /// AlterClientQuotas.
    AlterClientQuotas {
        /// Entities and their quota changes.
        entries: Vec<QuotaEntry>,
        /// Nothing is changed, only validated.
        validate_only: bool,
    },
    /// AlterUserScramCredentials: (user, mechanism, upsert (true) or deletion), deletions
    /// first as in the request.
    AlterUserScramCredentials(Vec<(String, i8, bool)>),
    /// AlterPartitionReassignments: (topic, [(partition, target replicas; `None` cancels)]).
    AlterPartitionReassignments(Reassignments),
    /// ElectLeaders.
    ElectLeaders {
        /// 0 preferred, 1 unclean.
        election_type: i8,
        /// `None`: every partition of the cluster.
        topics: Option<Vec<Topic>>,
    },
    /// UpdateFeatures: (feature, max version level).
    UpdateFeatures {
        /// Features and the level each should reach.
        features: Vec<(String, i16)>,
        /// Nothing is changed, only validated (v1+).
        validate_only: bool,
    },
    /// AlterReplicaLogDirs: (log directory, topics and partitions moved there).
    AlterReplicaLogDirs(Vec<(String, Vec<Topic>)>),
    /// UnregisterBroker: the broker id.
    UnregisterBroker(i32),
    /// InitProducerId: `None` for an idempotent producer without transactions.
    InitProducerId(Option<String>),
    /// AddPartitionsToTxn: (transactional id, topics and partitions); one transaction in
    /// v0-v3 (clients), several in v4+ (brokers).
    AddPartitionsToTxn(Vec<(String, Vec<Topic>)>),
    /// AddOffsetsToTxn.
    AddOffsetsToTxn {
        /// Transactional id.
        transactional_id: String,
        /// Consumer group whose offsets join the transaction.
        group: String,
    },
    /// EndTxn.
    EndTxn {
        /// Transactional id.
        transactional_id: String,
        /// Commit (true) or abort.
        committed: bool,
    },
    /// TxnOffsetCommit.
    TxnOffsetCommit {
        /// Transactional id.
        transactional_id: String,
        /// Consumer group.
        group: String,
        /// Topics and partitions whose offsets are committed.
        topics: Vec<Topic>,
    },
    /// DeleteGroups: the group ids.
    DeleteGroups(Vec<String>),
    /// OffsetDelete.
    OffsetDelete {
        /// Consumer group.
        group: String,
        /// Topics and partitions whose committed offsets are deleted.
        topics: Vec<Topic>,
    },
    /// CreateDelegationToken.
    CreateDelegationToken {
        /// The owner, (principal type, name), when the requester creates a token for someone
        /// else (v3+).
        owner: Option<(String, String)>,
        /// Renewers, (principal type, name).
        renewers: Vec<(String, String)>,
    },
    /// RenewDelegationToken (the token is named only by its HMAC, a secret: not kept).
    RenewDelegationToken,
    /// ExpireDelegationToken (the token is named only by its HMAC, a secret: not kept).
    ExpireDelegationToken,
    /// AlterShareGroupOffsets: group and (topic, [(partition, start offset)]).
    AlterShareGroupOffsets {
        /// Share group.
        group: String,
        /// Topics and partitions with their new start offsets.
        topics: PartitionOffsets,
    },
    /// DeleteShareGroupOffsets: group and topics.
    DeleteShareGroupOffsets {
        /// Share group.
        group: String,
        /// Topics whose share-group offsets are deleted.
        topics: Vec<String>,
    },
}

/// True for the api keys [`parse`] reads.
pub fn parsed(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::Produce
            | ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::CreatePartitions
            | ApiKey::DeleteRecords
            | ApiKey::CreateAcls
            | ApiKey::DeleteAcls
            | ApiKey::AlterConfigs
            | ApiKey::ElectLeaders
            | ApiKey::AlterReplicaLogDirs
            | ApiKey::InitProducerId
            | ApiKey::DeleteGroups
            | ApiKey::CreateDelegationToken
            | ApiKey::RenewDelegationToken
            | ApiKey::ExpireDelegationToken
            | ApiKey::IncrementalAlterConfigs
            | ApiKey::AlterClientQuotas
            | ApiKey::AddPartitionsToTxn
            | ApiKey::AddOffsetsToTxn
            | ApiKey::EndTxn
            | ApiKey::TxnOffsetCommit
            | ApiKey::AlterUserScramCredentials
            | ApiKey::AlterPartitionReassignments
            | ApiKey::UpdateFeatures
            | ApiKey::UnregisterBroker
            | ApiKey::AlterShareGroupOffsets
            | ApiKey::DeleteShareGroupOffsets
            | ApiKey::OffsetDelete
    )
}

/// True when the request or response of `key` at `version` is in a flexible version: the one
/// answer of [`wire::flexible`], derived from kafka-protocol.
pub fn flexible(key: ApiKey, version: i16) -> bool {
    wire::flexible(key, version)
}

/// Reads the body (after the request header) of a `key` request at `version`. The caller
/// checks that `version` is one the proxy reads (see the policy's table); the layouts follow
/// kafka-protocol's generated messages for those versions.
pub fn parse(key: ApiKey, version: i16, body: &[u8]) -> WireResult<Request> {
    if !parsed(key) {
        return Err("no walker for this api key");
    }
    let v = version;
    let r = &mut Reader::new(body, flexible(key, v));
    let request = match key {
        ApiKey::Produce => produce(r, v)?,
        ApiKey::CreateTopics => create_topics(r)?,
        ApiKey::DeleteTopics => delete_topics(r, v)?,
        ApiKey::CreatePartitions => create_partitions(r)?,
        ApiKey::DeleteRecords => Request::DeleteRecords(delete_records(r)?),
        ApiKey::CreateAcls => Request::CreateAcls(acls(r, false)?),
        ApiKey::DeleteAcls => Request::DeleteAcls(acls(r, true)?),
        ApiKey::AlterConfigs => alter_configs(r, false)?,
        ApiKey::IncrementalAlterConfigs => alter_configs(r, true)?,
        ApiKey::AlterClientQuotas => alter_client_quotas(r)?,
        ApiKey::AlterUserScramCredentials => alter_user_scram_credentials(r)?,
        ApiKey::AlterPartitionReassignments => alter_partition_reassignments(r, v)?,
        ApiKey::ElectLeaders => elect_leaders(r, v)?,
        ApiKey::UpdateFeatures => update_features(r, v)?,
        ApiKey::AlterReplicaLogDirs => alter_replica_log_dirs(r)?,
        ApiKey::UnregisterBroker => {
            let broker = r.i32()?;
            r.tags()?;
            Request::UnregisterBroker(broker)
        }
        ApiKey::InitProducerId => init_producer_id(r, v)?,
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn(r, v)?,
        ApiKey::AddOffsetsToTxn => {
            let transactional_id = r.string()?;
            r.i64()?; // producer id
            r.i16()?; // producer epoch
            let group = r.string()?;
            r.tags()?;
            Request::AddOffsetsToTxn {
                transactional_id,
                group,
            }
        }
        ApiKey::EndTxn => {
            let transactional_id = r.string()?;
            r.i64()?;
            r.i16()?;
            let committed = r.bool()?;
            r.tags()?;
            Request::EndTxn {
                transactional_id,
                committed,
            }
        }
        ApiKey::TxnOffsetCommit => txn_offset_commit(r, v)?,
        ApiKey::DeleteGroups => {
            let mut groups = Vec::new();
            for _ in 0..r.count()? {
                groups.push(r.string()?);
            }
            r.tags()?;
            Request::DeleteGroups(groups)
        }
        ApiKey::OffsetDelete => {
            let group = r.string()?;
            let mut topics = Vec::new();
            for _ in 0..r.count()? {
                let mut topic = Topic::named(r.string()?);
                for _ in 0..r.count()? {
                    topic.partitions.push(r.i32()?);
                }
                topics.push(topic);
            }
            Request::OffsetDelete { group, topics }
        }
        ApiKey::CreateDelegationToken => create_delegation_token(r, v)?,
        ApiKey::RenewDelegationToken | ApiKey::ExpireDelegationToken => {
            r.skip_bytes()?; // hmac: a secret
            r.i64()?;
            r.tags()?;
            if key == ApiKey::RenewDelegationToken {
                Request::RenewDelegationToken
            } else {
                Request::ExpireDelegationToken
            }
        }
        ApiKey::AlterShareGroupOffsets => {
            let group = r.string()?;
            let mut topics = Vec::new();
            for _ in 0..r.count()? {
                let name = r.string()?;
                let mut partitions = Vec::new();
                for _ in 0..r.count()? {
                    partitions.push((r.i32()?, r.i64()?));
                    r.tags()?;
                }
                r.tags()?;
                topics.push((name, partitions));
            }
            r.tags()?;
            Request::AlterShareGroupOffsets { group, topics }
        }
        ApiKey::DeleteShareGroupOffsets => {
            let group = r.string()?;
            let mut topics = Vec::new();
            for _ in 0..r.count()? {
                topics.push(r.string()?);
                r.tags()?;
            }
            r.tags()?;
            Request::DeleteShareGroupOffsets { group, topics }
        }
        _ => return Err("no walker for this api key"),
    };
    // Whatever follows the message is ignored, as the broker ignores it.
    Ok(request)
}

/// Produce: v0-v2 `acks, timeout, topic_data`; v3+ a transactional id first; v13 topic ids
/// instead of names.
fn produce(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    let transactional_id = if v >= 3 { r.nullable_string()? } else { None };
    let acks = r.i16()?;
    r.i32()?; // timeout_ms
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        let mut topic = Topic::default();
        if v <= 12 {
            topic.name = r.string()?;
        } else {
            topic.id = r.uuid()?;
        }
        for _ in 0..r.count()? {
            topic.partitions.push(r.i32()?);
            r.skip_bytes()?; // records
            r.tags()?;
        }
        r.tags()?;
        topics.push(topic);
    }
    r.tags()?;
    Ok(Request::Produce {
        transactional_id,
        acks,
        topics,
    })
}

fn create_topics(r: &mut Reader<'_>) -> WireResult<Request> {
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        topics.push(r.string()?);
        r.i32()?; // num_partitions
        r.i16()?; // replication_factor
        for _ in 0..r.count()? {
            r.i32()?; // partition_index
            r.i32s()?; // broker_ids
            r.tags()?;
        }
        for _ in 0..r.count()? {
            r.skip_string()?; // config name
            r.skip_string()?; // config value
            r.tags()?;
        }
        r.tags()?;
    }
    r.i32()?; // timeout_ms
    let validate_only = r.bool()?;
    r.tags()?;
    Ok(Request::CreateTopics {
        topics,
        validate_only,
    })
}

fn delete_topics(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        if v >= 6 {
            let name = r.nullable_string()?.unwrap_or_default();
            let id = r.uuid()?;
            r.tags()?;
            topics.push(Topic {
                name,
                id,
                partitions: Vec::new(),
            });
        } else {
            topics.push(Topic::named(r.string()?));
        }
    }
    r.i32()?; // timeout_ms
    r.tags()?;
    Ok(Request::DeleteTopics(topics))
}

fn create_partitions(r: &mut Reader<'_>) -> WireResult<Request> {
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        let name = r.string()?;
        let count = r.i32()?;
        for _ in 0..r.nullable_count()?.unwrap_or(0) {
            r.i32s()?; // broker_ids
            r.tags()?;
        }
        r.tags()?;
        topics.push((name, count));
    }
    r.i32()?; // timeout_ms
    let validate_only = r.bool()?;
    r.tags()?;
    Ok(Request::CreatePartitions {
        topics,
        validate_only,
    })
}

fn delete_records(r: &mut Reader<'_>) -> WireResult<PartitionOffsets> {
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        let name = r.string()?;
        let mut partitions = Vec::new();
        for _ in 0..r.count()? {
            partitions.push((r.i32()?, r.i64()?));
            r.tags()?;
        }
        r.tags()?;
        topics.push((name, partitions));
    }
    r.i32()?; // timeout_ms
    r.tags()?;
    Ok(topics)
}

/// CreateAcls creations or DeleteAcls filters (`filter`: name, principal and host nullable).
fn acls(r: &mut Reader<'_>, filter: bool) -> WireResult<Vec<Acl>> {
    let text = |r: &mut Reader<'_>| {
        if filter {
            r.nullable_string()
        } else {
            r.string().map(Some)
        }
    };
    let mut acls = Vec::new();
    for _ in 0..r.count()? {
        let resource_type = r.i8()?;
        let name = text(r)?;
        let pattern_type = r.i8()?;
        let principal = text(r)?;
        let host = text(r)?;
        let operation = r.i8()?;
        let permission = r.i8()?;
        r.tags()?;
        acls.push(Acl {
            resource_type,
            name,
            pattern_type,
            principal,
            host,
            operation,
            permission,
        });
    }
    r.tags()?;
    Ok(acls)
}

/// AlterConfigs, or IncrementalAlterConfigs (`incremental`: an operation per key).
fn alter_configs(r: &mut Reader<'_>, incremental: bool) -> WireResult<Request> {
    let mut resources = Vec::new();
    for _ in 0..r.count()? {
        let resource_type = r.i8()?;
        let name = r.string()?;
        let mut keys = Vec::new();
        for _ in 0..r.count()? {
            let key = r.string()?;
            let op = if incremental { Some(r.i8()?) } else { None };
            r.skip_string()?; // the value: never kept
            r.tags()?;
            keys.push((key, op));
        }
        r.tags()?;
        resources.push(ConfigResource {
            resource_type,
            name,
            keys,
        });
    }
    let validate_only = r.bool()?;
    r.tags()?;
    Ok(Request::AlterConfigs {
        resources,
        validate_only,
    })
}

fn alter_client_quotas(r: &mut Reader<'_>) -> WireResult<Request> {
    let mut entries = Vec::new();
    for _ in 0..r.count()? {
        let mut entry = QuotaEntry {
            entity: Vec::new(),
            ops: Vec::new(),
        };
        for _ in 0..r.count()? {
            entry.entity.push((r.string()?, r.nullable_string()?));
            r.tags()?;
        }
        for _ in 0..r.count()? {
            entry.ops.push((r.string()?, r.f64()?, r.bool()?));
            r.tags()?;
        }
        r.tags()?;
        entries.push(entry);
    }
    let validate_only = r.bool()?;
    r.tags()?;
    Ok(Request::AlterClientQuotas {
        entries,
        validate_only,
    })
}

fn alter_user_scram_credentials(r: &mut Reader<'_>) -> WireResult<Request> {
    let mut changes = Vec::new();
    for _ in 0..r.count()? {
        changes.push((r.string()?, r.i8()?, false));
        r.tags()?;
    }
    for _ in 0..r.count()? {
        changes.push((r.string()?, r.i8()?, true));
        r.i32()?; // iterations
        r.skip_bytes()?; // salt: a secret
        r.skip_bytes()?; // salted_password: a secret
        r.tags()?;
    }
    r.tags()?;
    Ok(Request::AlterUserScramCredentials(changes))
}

fn alter_partition_reassignments(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    r.i32()?; // timeout_ms
    if v >= 1 {
        r.bool()?; // allow_replication_factor_change
    }
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        let name = r.string()?;
        let mut partitions = Vec::new();
        for _ in 0..r.count()? {
            partitions.push((r.i32()?, r.nullable_i32s()?));
            r.tags()?;
        }
        r.tags()?;
        topics.push((name, partitions));
    }
    r.tags()?;
    Ok(Request::AlterPartitionReassignments(topics))
}

fn elect_leaders(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    let election_type = if v >= 1 { r.i8()? } else { 0 };
    let topics = match r.nullable_count()? {
        None => None,
        Some(n) => {
            let mut topics = Vec::new();
            for _ in 0..n {
                let mut topic = Topic::named(r.string()?);
                topic.partitions = r.i32s()?;
                r.tags()?;
                topics.push(topic);
            }
            Some(topics)
        }
    };
    r.i32()?; // timeout_ms
    r.tags()?;
    Ok(Request::ElectLeaders {
        election_type,
        topics,
    })
}

fn update_features(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    r.i32()?; // timeout_ms
    let mut features = Vec::new();
    for _ in 0..r.count()? {
        features.push((r.string()?, r.i16()?));
        if v == 0 {
            r.bool()?; // allow_downgrade
        } else {
            r.i8()?; // upgrade_type
        }
        r.tags()?;
    }
    let validate_only = v >= 1 && r.bool()?;
    r.tags()?;
    Ok(Request::UpdateFeatures {
        features,
        validate_only,
    })
}

fn alter_replica_log_dirs(r: &mut Reader<'_>) -> WireResult<Request> {
    let mut dirs = Vec::new();
    for _ in 0..r.count()? {
        let path = r.string()?;
        let mut topics = Vec::new();
        for _ in 0..r.count()? {
            let mut topic = Topic::named(r.string()?);
            topic.partitions = r.i32s()?;
            r.tags()?;
            topics.push(topic);
        }
        r.tags()?;
        dirs.push((path, topics));
    }
    r.tags()?;
    Ok(Request::AlterReplicaLogDirs(dirs))
}

fn init_producer_id(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    let transactional_id = r.nullable_string()?;
    r.i32()?; // transaction_timeout_ms
    if v >= 3 {
        r.i64()?; // producer_id
        r.i16()?; // producer_epoch
    }
    r.tags()?;
    Ok(Request::InitProducerId(transactional_id))
}

/// Topics with an int32 array of partitions and tagged fields (AddPartitionsToTxn).
fn topics_with_partition_array(r: &mut Reader<'_>) -> WireResult<Vec<Topic>> {
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        let mut topic = Topic::named(r.string()?);
        topic.partitions = r.i32s()?;
        r.tags()?;
        topics.push(topic);
    }
    Ok(topics)
}

fn add_partitions_to_txn(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    let mut transactions = Vec::new();
    if v >= 4 {
        for _ in 0..r.count()? {
            let transactional_id = r.string()?;
            r.i64()?; // producer_id
            r.i16()?; // producer_epoch
            r.bool()?; // verify_only
            let topics = topics_with_partition_array(r)?;
            r.tags()?;
            transactions.push((transactional_id, topics));
        }
    } else {
        let transactional_id = r.string()?;
        r.i64()?;
        r.i16()?;
        transactions.push((transactional_id, topics_with_partition_array(r)?));
    }
    r.tags()?;
    Ok(Request::AddPartitionsToTxn(transactions))
}

fn txn_offset_commit(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    let transactional_id = r.string()?;
    let group = r.string()?;
    r.i64()?; // producer_id
    r.i16()?; // producer_epoch
    if v >= 3 {
        r.i32()?; // generation_id
        r.skip_string()?; // member_id
        r.skip_string()?; // group_instance_id
    }
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        let mut topic = Topic::named(r.string()?);
        for _ in 0..r.count()? {
            topic.partitions.push(r.i32()?);
            r.i64()?; // committed_offset
            if v >= 2 {
                r.i32()?; // committed_leader_epoch
            }
            r.skip_string()?; // committed_metadata
            r.tags()?;
        }
        r.tags()?;
        topics.push(topic);
    }
    r.tags()?;
    Ok(Request::TxnOffsetCommit {
        transactional_id,
        group,
        topics,
    })
}

fn create_delegation_token(r: &mut Reader<'_>, v: i16) -> WireResult<Request> {
    let owner = if v >= 3 {
        match (r.nullable_string()?, r.nullable_string()?) {
            (Some(t), Some(n)) => Some((t, n)),
            _ => None,
        }
    } else {
        None
    };
    let mut renewers = Vec::new();
    for _ in 0..r.count()? {
        renewers.push((r.string()?, r.string()?));
        r.tags()?;
    }
    r.i64()?; // max_lifetime_ms
    r.tags()?;
    Ok(Request::CreateDelegationToken { owner, renewers })
}

// ---------------------------------------------------------------------------------------------
// Metadata: the one request every policy allows that can create topics

/// Whether a Metadata request can make a broker with `auto.create.topics.enable=true` create
/// the topics it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataAutoCreate {
    /// It cannot: it names no topic (all topics, or none), or v4+ with
    /// `allow_auto_topic_creation` false.
    No,
    /// v0-v3 naming topics: these versions have no flag, and the broker creates every topic
    /// named that does not exist.
    Always,
    /// v4+ with `allow_auto_topic_creation` true: the flag is the byte at this offset of the
    /// body (a boolean; 0 turns it off, with nothing else of the request changed).
    Flag(usize),
}

/// Reads a Metadata body (after the request header) at `version` as far as its
/// `allow_auto_topic_creation` flag: linear in the topics it names, nothing kept.
pub fn metadata_auto_create(version: i16, body: &[u8]) -> WireResult<MetadataAutoCreate> {
    let v = version;
    let r = &mut Reader::new(body, wire::flexible(ApiKey::Metadata, v));
    // v0: an empty list means every topic; v1+: null means every topic, empty none.
    let topics = if v >= 1 {
        r.nullable_count()?.unwrap_or(0)
    } else {
        r.count()?
    };
    for _ in 0..topics {
        if v >= 10 {
            r.uuid()?;
        }
        r.skip_string()?;
        r.tags()?;
    }
    if v < 4 {
        return Ok(if topics > 0 {
            MetadataAutoCreate::Always
        } else {
            MetadataAutoCreate::No
        });
    }
    let at = r.pos();
    Ok(if r.bool()? && topics > 0 {
        MetadataAutoCreate::Flag(at)
    } else {
        MetadataAutoCreate::No
    })
}

/// The topic names of a Metadata v0-v3 body, for the denial of one that would create them.
pub fn metadata_topic_names(version: i16, body: &[u8]) -> WireResult<Vec<String>> {
    if !(0..=3).contains(&version) {
        return Err("Metadata version with an auto-creation flag");
    }
    let r = &mut Reader::new(body, false);
    let mut names = Vec::new();
    for _ in 0..r.nullable_count()?.unwrap_or(0) {
        names.push(r.string()?);
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// OffsetCommit: allowed to every policy, audited when it resets offsets from outside the group

/// Versions of OffsetCommit whose layout [`offset_commit`] and [`outcome`] know: v0-v1 (Kafka
/// 3.x brokers still accept them) and those kafka-protocol has (v2-v9). v10 names topics by id
/// and is unstable in Kafka 4.1.
pub const OFFSET_COMMIT_VERSIONS: std::ops::RangeInclusive<i16> = 0..=9;

/// True when an OffsetCommit body (after the request header) at `version` commits from outside
/// group membership: v0 (which has no generation), or a generation below 0 or an empty member
/// id, as admin tools (kafka-consumer-groups --reset-offsets, the AdminClient's
/// alterConsumerGroupOffsets) and standalone consumers send it. A group member's periodic
/// commit carries its generation and member id. Reads only the group id, generation and member
/// id; an unreadable prefix counts as outside (the audit then says it is unreadable).
pub fn offset_commit_outside_membership(version: i16, body: &[u8]) -> bool {
    if version < 1 {
        return true;
    }
    fn membership(r: &mut Reader<'_>) -> WireResult<(i32, bool)> {
        r.skip_string()?; // group_id
        let generation = r.i32()?;
        let member_empty = r.raw()?.is_empty();
        Ok((generation, member_empty))
    }
    let r = &mut Reader::new(body, wire::flexible(ApiKey::OffsetCommit, version));
    match membership(r) {
        Ok((generation, member_empty)) => generation < 0 || member_empty,
        Err(_) => true,
    }
}

/// An OffsetCommit request the audit names: the group and each partition's new offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// Consumer group.
    pub group: String,
    /// (topic, [(partition, committed offset)]).
    pub topics: Vec<(String, Vec<(i32, i64)>)>,
}

/// Reads an OffsetCommit body (after the request header) at `version` (one of
/// [`OFFSET_COMMIT_VERSIONS`]); bytes after the message are ignored, as the broker ignores them.
pub fn offset_commit(version: i16, body: &[u8]) -> WireResult<OffsetCommit> {
    if !OFFSET_COMMIT_VERSIONS.contains(&version) {
        return Err("OffsetCommit version the proxy does not read");
    }
    let v = version;
    let r = &mut Reader::new(body, wire::flexible(ApiKey::OffsetCommit, v));
    let group = r.string()?;
    if v >= 1 {
        r.i32()?; // generation_id_or_member_epoch
        r.skip_string()?; // member_id
    }
    if v >= 7 {
        r.skip_string()?; // group_instance_id
    }
    if (2..=4).contains(&v) {
        r.i64()?; // retention_time_ms
    }
    let mut topics = Vec::new();
    for _ in 0..r.count()? {
        let name = r.string()?;
        let mut partitions = Vec::new();
        for _ in 0..r.count()? {
            let partition = r.i32()?;
            let offset = r.i64()?;
            if v >= 6 {
                r.i32()?; // committed_leader_epoch
            }
            if v == 1 {
                r.i64()?; // commit_timestamp
            }
            r.skip_string()?; // committed_metadata
            r.tags()?;
            partitions.push((partition, offset));
        }
        r.tags()?;
        topics.push((name, partitions));
    }
    r.tags()?;
    Ok(OffsetCommit { group, topics })
}

// ---------------------------------------------------------------------------------------------
// Audit text

/// A name from the wire as an audit log shows it: lossy UTF-8, control characters escaped,
/// at most `NAME_CAP` characters.
pub fn clean(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(NAME_CAP));
    for (i, c) in text.chars().enumerate() {
        if i == NAME_CAP {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A topic id as Kafka prints it in logs: the UUID in its canonical form.
pub fn uuid_text(id: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An audit list of at most [`AUDIT_CAP`] entries; the rest are counted (and their error
/// codes summarised) in one last entry. Entries past the cap are never formatted.
#[derive(Debug)]
pub struct Capped<T> {
    items: Vec<T>,
    more: usize,
    more_failed: usize,
    first_error: i16,
}

impl<T> Default for Capped<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            more: 0,
            more_failed: 0,
            first_error: 0,
        }
    }
}

impl Capped<String> {
    /// Adds an entry, formatted only if it is kept.
    pub fn push(&mut self, entry: impl FnOnce() -> String) {
        if self.items.len() < AUDIT_CAP {
            self.items.push(entry());
        } else {
            self.more += 1;
        }
    }

    /// The entries, and "… and N more" if some were only counted.
    pub fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.items.push(format!("… and {} more", self.more));
        }
        self.items
    }
}

impl Capped<(String, i16)> {
    /// Adds a (resource, error code) entry, the name formatted only if it is kept.
    pub fn push(&mut self, name: impl FnOnce() -> String, code: i16) {
        if self.items.len() < AUDIT_CAP {
            self.items.push((name(), code));
        } else {
            self.more += 1;
            if code != 0 {
                self.more_failed += 1;
                if self.first_error == 0 {
                    self.first_error = code;
                }
            }
        }
    }

    /// The entries, and if some were only counted, one more: ("… and N more, M failed", the
    /// first error code among them or 0).
    pub fn finish(mut self) -> Vec<(String, i16)> {
        if self.more > 0 {
            self.items.push((
                format!("… and {} more, {} failed", self.more, self.more_failed),
                self.first_error,
            ));
        }
        self.items
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

/// A partition as Kafka names it in logs: `topic-3`.
fn partition_text(topic: &[u8], partition: i32) -> String {
    format!("{}-{partition}", clean(topic))
}

/// Reads the (resource, error code) pairs of the body (after the response header) of a `key`
/// response at `version` into `out`: one pair per resource the response reports on, in
/// response order, and ("", code) for a top-level error code. Only the audited APIs (the
/// cluster-changing ones) are read; for the others nothing is added.
pub fn outcome(
    key: ApiKey,
    version: i16,
    body: &[u8],
    out: &mut Capped<(String, i16)>,
) -> WireResult<()> {
    let v = version;
    let r = &mut Reader::new(body, flexible(key, v));
    match key {
        ApiKey::CreateTopics => {
            r.i32()?; // throttle_time_ms
            for _ in 0..r.count()? {
                let name = r.raw()?;
                if v >= 7 {
                    r.uuid()?;
                }
                let code = r.i16()?;
                r.skip_string()?; // error_message
                if v >= 5 {
                    r.i32()?; // num_partitions
                    r.i16()?; // replication_factor
                    for _ in 0..r.nullable_count()?.unwrap_or(0) {
                        r.skip_string()?; // name
                        r.skip_string()?; // value
                        r.bool()?; // read_only
                        r.i8()?; // config_source
                        r.bool()?; // is_sensitive
                        r.tags()?;
                    }
                }
                r.tags()?;
                out.push(|| clean(name), code);
            }
        }
        ApiKey::DeleteTopics => {
            r.i32()?;
            for _ in 0..r.count()? {
                let name = r.nullable_raw()?;
                let id = if v >= 6 { r.uuid()? } else { NIL_ID };
                let code = r.i16()?;
                if v >= 5 {
                    r.skip_string()?;
                }
                r.tags()?;
                out.push(
                    || match name {
                        Some(name) if !name.is_empty() || id == NIL_ID => clean(name),
                        _ => uuid_text(&id),
                    },
                    code,
                );
            }
        }
        ApiKey::CreatePartitions | ApiKey::DeleteGroups => {
            r.i32()?;
            for _ in 0..r.count()? {
                let name = r.raw()?;
                let code = r.i16()?;
                if key == ApiKey::CreatePartitions {
                    r.skip_string()?;
                }
                r.tags()?;
                out.push(|| clean(name), code);
            }
        }
        ApiKey::DeleteRecords => {
            r.i32()?;
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                for _ in 0..r.count()? {
                    let partition = r.i32()?;
                    r.i64()?; // low_watermark
                    let code = r.i16()?;
                    r.tags()?;
                    out.push(|| partition_text(topic, partition), code);
                }
                r.tags()?;
            }
        }
        ApiKey::CreateAcls => {
            r.i32()?;
            for _ in 0..r.count()? {
                let code = r.i16()?;
                r.skip_string()?;
                r.tags()?;
                out.push(String::new, code);
            }
        }
        ApiKey::DeleteAcls => {
            r.i32()?;
            for _ in 0..r.count()? {
                let code = r.i16()?;
                r.skip_string()?;
                out.push(String::new, code);
                for _ in 0..r.count()? {
                    let code = r.i16()?;
                    r.skip_string()?;
                    let acl = response_acl(r)?;
                    r.tags()?;
                    out.push(|| format!("deleted {}", acl_text(&acl)), code);
                }
                r.tags()?;
            }
        }
        ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs => {
            r.i32()?;
            for _ in 0..r.count()? {
                let code = r.i16()?;
                r.skip_string()?;
                let resource_type = r.i8()?;
                let name = r.raw()?;
                r.tags()?;
                out.push(
                    || format!("{}:{}", config_type(resource_type), clean(name)),
                    code,
                );
            }
        }
        ApiKey::AlterClientQuotas => {
            r.i32()?;
            for _ in 0..r.count()? {
                let code = r.i16()?;
                r.skip_string()?;
                let mut entity = Vec::new();
                for _ in 0..r.count()? {
                    entity.push((r.raw()?, r.nullable_raw()?));
                    r.tags()?;
                }
                r.tags()?;
                out.push(|| entity_text(entity.iter().copied()), code);
            }
        }
        ApiKey::AlterUserScramCredentials => {
            r.i32()?;
            for _ in 0..r.count()? {
                let user = r.raw()?;
                let code = r.i16()?;
                r.skip_string()?;
                r.tags()?;
                out.push(|| clean(user), code);
            }
        }
        ApiKey::AlterPartitionReassignments => {
            r.i32()?;
            if v >= 1 {
                r.bool()?;
            }
            let code = r.i16()?;
            r.skip_string()?;
            out.push(String::new, code);
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                for _ in 0..r.count()? {
                    let partition = r.i32()?;
                    let code = r.i16()?;
                    r.skip_string()?;
                    r.tags()?;
                    out.push(|| partition_text(topic, partition), code);
                }
                r.tags()?;
            }
        }
        ApiKey::ElectLeaders => {
            r.i32()?;
            if v >= 1 {
                let code = r.i16()?;
                out.push(String::new, code);
            }
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                for _ in 0..r.count()? {
                    let partition = r.i32()?;
                    let code = r.i16()?;
                    r.skip_string()?;
                    r.tags()?;
                    out.push(|| partition_text(topic, partition), code);
                }
                r.tags()?;
            }
        }
        ApiKey::UpdateFeatures => {
            r.i32()?;
            let code = r.i16()?;
            r.skip_string()?;
            out.push(String::new, code);
            if v <= 1 {
                for _ in 0..r.count()? {
                    let feature = r.raw()?;
                    let code = r.i16()?;
                    r.skip_string()?;
                    r.tags()?;
                    out.push(|| clean(feature), code);
                }
            }
        }
        ApiKey::AlterReplicaLogDirs => {
            r.i32()?;
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                for _ in 0..r.count()? {
                    let partition = r.i32()?;
                    let code = r.i16()?;
                    r.tags()?;
                    out.push(|| partition_text(topic, partition), code);
                }
                r.tags()?;
            }
        }
        ApiKey::UnregisterBroker => {
            r.i32()?;
            let code = r.i16()?;
            r.skip_string()?;
            out.push(String::new, code);
        }
        ApiKey::OffsetCommit => {
            if v >= 3 {
                r.i32()?; // throttle_time_ms
            }
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                for _ in 0..r.count()? {
                    let partition = r.i32()?;
                    let code = r.i16()?;
                    r.tags()?;
                    out.push(|| partition_text(topic, partition), code);
                }
                r.tags()?;
            }
        }
        ApiKey::OffsetDelete => {
            let code = r.i16()?;
            r.i32()?;
            out.push(String::new, code);
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                for _ in 0..r.count()? {
                    let partition = r.i32()?;
                    let code = r.i16()?;
                    out.push(|| partition_text(topic, partition), code);
                }
            }
        }
        ApiKey::CreateDelegationToken => {
            let code = r.i16()?;
            r.skip_string()?; // principal_type
            r.skip_string()?; // principal_name
            if v >= 3 {
                r.skip_string()?; // token_requester_principal_type
                r.skip_string()?; // token_requester_principal_name
            }
            r.i64()?; // issue_timestamp_ms
            r.i64()?; // expiry_timestamp_ms
            r.i64()?; // max_timestamp_ms
            let token_id = r.raw()?;
            r.skip_bytes()?; // hmac: a secret
            r.i32()?; // throttle_time_ms
            out.push(
                || {
                    if token_id.is_empty() {
                        String::new()
                    } else {
                        format!("token {}", clean(token_id))
                    }
                },
                code,
            );
        }
        ApiKey::RenewDelegationToken | ApiKey::ExpireDelegationToken => {
            let code = r.i16()?;
            r.i64()?; // expiry_timestamp_ms
            r.i32()?; // throttle_time_ms
            out.push(String::new, code);
        }
        ApiKey::AlterShareGroupOffsets => {
            r.i32()?;
            let code = r.i16()?;
            r.skip_string()?;
            out.push(String::new, code);
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                r.uuid()?;
                for _ in 0..r.count()? {
                    let partition = r.i32()?;
                    let code = r.i16()?;
                    r.skip_string()?;
                    r.tags()?;
                    out.push(|| partition_text(topic, partition), code);
                }
                r.tags()?;
            }
        }
        ApiKey::DeleteShareGroupOffsets => {
            r.i32()?;
            let code = r.i16()?;
            r.skip_string()?;
            out.push(String::new, code);
            for _ in 0..r.count()? {
                let topic = r.raw()?;
                r.uuid()?;
                let code = r.i16()?;
                r.skip_string()?;
                r.tags()?;
                out.push(|| clean(topic), code);
            }
        }
        _ => return Ok(()),
    }
    r.tags()?;
    r.end()
}

/// The binding a DeleteAcls response reports as deleted.
fn response_acl(r: &mut Reader<'_>) -> WireResult<Acl> {
    let text = |r: &mut Reader<'_>| r.nullable_raw().map(|b| b.map(clean));
    Ok(Acl {
        resource_type: r.i8()?,
        name: text(r)?,
        pattern_type: r.i8()?,
        principal: text(r)?,
        host: text(r)?,
        operation: r.i8()?,
        permission: r.i8()?,
    })
}

/// The name of a configuration resource type.
pub fn config_type(t: i8) -> String {
    match t {
        2 => "topic".into(),
        4 => "broker".into(),
        8 => "broker-logger".into(),
        16 => "client-metrics".into(),
        32 => "group".into(),
        t => format!("type{t}"),
    }
}

/// The name of an ACL resource type.
fn acl_resource_type(t: i8) -> String {
    match t {
        1 => "any".into(),
        2 => "topic".into(),
        3 => "group".into(),
        4 => "cluster".into(),
        5 => "transactional-id".into(),
        6 => "delegation-token".into(),
        7 => "user".into(),
        t => format!("type{t}"),
    }
}

fn acl_pattern_type(t: i8) -> String {
    match t {
        1 => "any".into(),
        2 => "match".into(),
        3 => "literal".into(),
        4 => "prefixed".into(),
        t => format!("pattern{t}"),
    }
}

fn acl_operation(op: i8) -> String {
    const NAMES: [&str; 16] = [
        "unknown",
        "any",
        "all",
        "read",
        "write",
        "create",
        "delete",
        "alter",
        "describe",
        "cluster-action",
        "describe-configs",
        "alter-configs",
        "idempotent-write",
        "create-tokens",
        "describe-tokens",
        "two-phase-commit",
    ];
    usize::try_from(op)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("operation{op}"), |s| (*s).to_owned())
}

fn acl_permission(p: i8) -> String {
    match p {
        1 => "any".into(),
        2 => "deny".into(),
        3 => "allow".into(),
        p => format!("permission{p}"),
    }
}

/// An ACL binding or filter in one line, e.g. `allow User:bob read topic:orders (literal)
/// from host *`; `*any*` where a filter matches anything.
pub fn acl_text(acl: &Acl) -> String {
    let any = |s: &Option<String>| s.as_deref().map_or_else(|| "*any*".to_owned(), clean_str);
    format!(
        "{} {} {} {}:{} ({}) from host {}",
        acl_permission(acl.permission),
        any(&acl.principal),
        acl_operation(acl.operation),
        acl_resource_type(acl.resource_type),
        any(&acl.name),
        acl_pattern_type(acl.pattern_type),
        any(&acl.host),
    )
}

/// [`clean`] for a string already known to be UTF-8.
pub fn clean_str(s: &str) -> String {
    clean(s.as_bytes())
}

/// A client quota entity, e.g. `user=alice,client-id=<default>`.
fn entity_text<'b>(entity: impl Iterator<Item = (&'b [u8], Option<&'b [u8]>)>) -> String {
    let parts: Vec<String> = entity
        .map(|(t, n)| {
            format!(
                "{}={}",
                clean(t),
                n.map_or_else(|| "<default>".to_owned(), clean)
            )
        })
        .collect();
    parts.join(",")
}

/// A client quota entity the policy read from a request, as the audit shows it, e.g.
/// `user=alice,client-id=<default>`.
pub fn quota_entity_text(entity: &[(String, Option<String>)]) -> String {
    entity_text(
        entity
            .iter()
            .map(|(t, n)| (t.as_bytes(), n.as_deref().map(str::as_bytes))),
    )
}

/// The name of a SCRAM mechanism.
pub fn scram_mechanism(m: i8) -> String {
    match m {
        1 => "SCRAM-SHA-256".into(),
        2 => "SCRAM-SHA-512".into(),
        m => format!("mechanism{m}"),
    }
}

/// The name of an IncrementalAlterConfigs operation.
pub fn config_operation(op: i8) -> String {
    match op {
        0 => "set".into(),
        1 => "delete".into(),
        2 => "append".into(),
        3 => "subtract".into(),
        op => format!("operation{op}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_counts_must_fit_the_remaining_bytes() {
        // int16 string length 5 with 4 bytes behind it.
        assert_eq!(
            Reader::new(&[0, 5, b'a', b'b', b'c', b'd'], false).string(),
            Err("length larger than the remaining bytes")
        );
        // Compact length 4 (3 bytes) with 3 bytes: fine.
        assert_eq!(
            Reader::new(&[4, b'a', b'b', b'c'], true)
                .string()
                .as_deref(),
            Ok("abc")
        );
        // An int32 array count of a billion in a short buffer.
        assert!(Reader::new(&[0x40, 0, 0, 0, 1, 2], false).count().is_err());
        // A compact count of 2^31 - 1.
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x07], true)
            .count()
            .is_err());
        // Varints longer than 5 bytes or beyond u32.
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], true)
            .count()
            .is_err());
        assert!(Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x10], true)
            .count()
            .is_err());
        // Negative lengths other than -1.
        assert_eq!(
            Reader::new(&[0xff, 0xfe], false).skip_string(),
            Err("negative length")
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xfe], false).count(),
            Err("negative array count")
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xfe], false).skip_bytes(),
            Err("negative length")
        );
    }

    #[test]
    fn null_is_only_accepted_where_kafka_accepts_it() {
        assert_eq!(
            Reader::new(&[0xff, 0xff], false).nullable_string(),
            Ok(None)
        );
        assert_eq!(Reader::new(&[0], true).nullable_string(), Ok(None));
        assert_eq!(
            Reader::new(&[0xff, 0xff], false).string(),
            Err("null for a non-nullable string")
        );
        assert_eq!(
            Reader::new(&[0], true).count(),
            Err("null for a non-nullable array")
        );
        assert_eq!(Reader::new(&[0], true).nullable_count(), Ok(None));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff], false).nullable_i32s(),
            Ok(None)
        );
        assert_eq!(
            Reader::new(&[0, 2, 0xc3, 0x28], false).string(),
            Err("string is not UTF-8")
        );
        // Responses are read as raw bytes: not UTF-8 is shown, not refused.
        assert_eq!(
            Reader::new(&[0, 2, 0xc3, 0x28], false).raw(),
            Ok(&[0xc3, 0x28][..])
        );
    }

    #[test]
    fn tagged_fields_are_stepped_over_by_size_in_flexible_versions_only() {
        // Two tagged fields (tag 0: 2 bytes, tag 5: 0 bytes), then an int16.
        let mut r = Reader::new(&[2, 0, 2, 0xaa, 0xbb, 5, 0, 0, 7], true);
        r.tags().unwrap();
        assert_eq!(r.i16(), Ok(7));
        r.end().unwrap();
        let mut r = Reader::new(&[0, 7], false);
        r.tags().unwrap();
        assert_eq!(r.i16(), Ok(7));
        // A tagged field larger than what remains.
        assert!(Reader::new(&[1, 0, 9, 0], true).tags().is_err());
    }

    #[test]
    fn the_body_starts_after_the_request_header_of_the_right_version() {
        // CreateTopics v5 (flexible, header v2): client id "ab", no tagged fields.
        let mut frame = vec![
            0, 0, 0, 0, 0, 19, 0, 5, 0, 0, 0, 9, 0, 2, b'a', b'b', 0, 0xee,
        ];
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(request_body(&frame, 19, 5), Ok(&[0xee][..]));
        // Header v1 (CreateTopics v4): no tagged fields, so the 0 is body.
        assert_eq!(request_body(&frame, 19, 4), Ok(&[0, 0xee][..]));
        // The length prefix must match the frame.
        frame[3] += 1;
        assert!(request_body(&frame, 19, 5).is_err());
        assert!(request_body(&[0, 0, 0], 19, 5).is_err());
    }

    #[test]
    fn parse_ignores_trailing_bytes_as_the_broker_does_and_refuses_apis_without_a_walker() {
        // UnregisterBroker v0: broker id, no tagged fields.
        let body = [0, 0, 0, 3, 0];
        assert_eq!(
            parse(ApiKey::UnregisterBroker, 0, &body),
            Ok(Request::UnregisterBroker(3))
        );
        // The broker reads the message and ignores what follows it: so does the policy.
        assert_eq!(
            parse(ApiKey::UnregisterBroker, 0, &[0, 0, 0, 3, 0, 0, 0xff]),
            Ok(Request::UnregisterBroker(3))
        );
        // A message cut short is still an error.
        assert!(parse(ApiKey::UnregisterBroker, 0, &[0, 0, 0]).is_err());
        assert!(parse(ApiKey::Fetch, 12, &body).is_err());
        assert!(!parsed(ApiKey::Fetch));
    }

    #[test]
    fn audit_text_helpers() {
        assert_eq!(
            uuid_text(&[0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
        assert_eq!(clean(b"a\tb\x7f"), "a\\tb\\u{7f}");
        assert_eq!(clean(&[0x66, 0xff, 0x6f]), "f\u{fffd}o");
        assert_eq!(clean(&[b'x'; 300]).chars().count(), NAME_CAP + 1);
        assert_eq!(acl_operation(15), "two-phase-commit");
        assert_eq!(acl_operation(16), "operation16");
        assert_eq!(acl_operation(-1), "operation-1");
        let mut capped = Capped::<String>::default();
        for i in 0..AUDIT_CAP + 3 {
            capped.push(|| i.to_string());
        }
        let got = capped.finish();
        assert_eq!(got.len(), AUDIT_CAP + 1);
        assert_eq!(got.last().map(String::as_str), Some("… and 3 more"));
    }
}
