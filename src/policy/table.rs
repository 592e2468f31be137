//! The policy table: every API key of kafka-protocol, what it needs from a policy and how a
//! denial of it is answered.

use kafka_protocol::messages::{self as km, ApiKey};
use kafka_protocol::protocol::{Request, VersionRange};

use crate::kafka::codec::versions_of;

/// TOPIC_AUTHORIZATION_FAILED.
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// GROUP_AUTHORIZATION_FAILED.
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
/// CLUSTER_AUTHORIZATION_FAILED.
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
/// DELEGATION_TOKEN_AUTHORIZATION_FAILED.
pub const DELEGATION_TOKEN_AUTHORIZATION_FAILED: i16 = 65;

/// What a request needs from the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading and being a consumer: fetch, metadata, describes and lists, group membership,
    /// offset commits, authentication, telemetry. Every policy allows it.
    Read,
    /// Writing records: produce, transactions, producer ids. `no-admin` and `full` allow it.
    Write,
    /// A change to the cluster a client may ask for (topics, partitions, records,
    /// configuration, ACLs, quotas, credentials, groups, features, brokers). Only `full`
    /// allows it, and every such request is audited.
    Admin,
    /// Inter-broker and controller APIs: no client sends them. Only `full` lets them through;
    /// a denial closes the connection.
    Internal,
}

/// How a denial of an API is answered: the authorization error its own response carries, or
/// closing the connection. The denial builders take the error of every answer from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No response of the API can carry a denial, or no policy denies it: a denial closes the
    /// connection.
    Close,
    /// TOPIC_AUTHORIZATION_FAILED, on each topic the request names.
    Topic,
    /// GROUP_AUTHORIZATION_FAILED.
    Group,
    /// CLUSTER_AUTHORIZATION_FAILED.
    Cluster,
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED. As the broker answers, the cluster's instead
    /// where the request needs a cluster permission: InitProducerId of an idempotent producer
    /// (no transactional id: IdempotentWrite) and AddPartitionsToTxn v4+ (the brokers' own
    /// verification: ClusterAction).
    TransactionalId,
    /// DELEGATION_TOKEN_AUTHORIZATION_FAILED.
    DelegationToken,
    /// Each configuration resource's own, as the broker answers: the topic's or the group's
    /// for a topic or group, the cluster's for the rest (brokers, loggers, metrics...).
    ConfigResource,
}

impl Denial {
    /// The error code a denial of this kind carries; for [`Denial::ConfigResource`] the
    /// cluster's, which a resource other than a topic or group gets and which a request naming
    /// no resource reports. `None`: the connection closes.
    pub const fn error_code(self) -> Option<i16> {
        Some(match self {
            Denial::Close => return None,
            Denial::Topic => TOPIC_AUTHORIZATION_FAILED,
            Denial::Group => GROUP_AUTHORIZATION_FAILED,
            Denial::Cluster | Denial::ConfigResource => CLUSTER_AUTHORIZATION_FAILED,
            Denial::TransactionalId => TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            Denial::DelegationToken => DELEGATION_TOKEN_AUTHORIZATION_FAILED,
        })
    }
}

/// One row of the table: what an API needs, how a denial is answered, whether it is audited
/// and which versions the proxy reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// What the API needs.
    pub access: Access,
    /// The error a denial answers with, or [`Denial::Close`].
    pub denial: Denial,
    /// True for the requests that change the cluster: their audit line is written, with what
    /// they change and what the broker answered.
    pub audited: bool,
    /// `Some(versions)`: the versions the proxy reads requests (and, for the audit, responses)
    /// of the API at, through the walkers of [`crate::kafka::requests`], and encodes its error
    /// response at; a denial at other versions, and under `None`, closes the connection.
    pub answer: Option<VersionRange>,
}

/// The row of the APIs every policy allows: never read, never denied.
const READ: Rule = Rule {
    access: Access::Read,
    denial: Denial::Close,
    audited: false,
    answer: None,
};

/// The row of the inter-broker and controller APIs: only `full` lets them through, and no
/// response is read or written for them.
const INTERNAL: Rule = Rule {
    access: Access::Internal,
    denial: Denial::Close,
    audited: false,
    answer: None,
};

/// The row of the inter-broker and controller APIs that change the cluster: KRaft voters and
/// elections, partition state, broker and controller registration, producer id blocks,
/// transaction markers, share-group state. Only `full` lets them through, and each is audited:
/// no client should send them, so one that does is worth a line.
const INTERNAL_AUDITED: Rule = Rule {
    audited: true,
    ..INTERNAL
};

/// `audited` column: the request changes the cluster.
const AUDIT: bool = true;
/// `audited` column: the request changes no more than records, transactions or producer ids.
const NO_AUDIT: bool = false;

/// A row of an API the proxy reads and answers at `versions`.
const fn row(access: Access, denial: Denial, audited: bool, versions: VersionRange) -> Rule {
    Rule {
        access,
        denial,
        audited,
        answer: Some(versions),
    }
}

/// The versions of request `R` the proxy can read and answer: those kafka-protocol can both
/// decode and encode of the request and of its response.
const fn answered<R: Request>() -> VersionRange {
    versions_of::<R, R::Response>()
}

/// Produce versions the proxy answers: kafka-protocol's (v3+), and v0-v2, which Kafka 3.x
/// brokers still accept and whose response the proxy writes by hand.
const PRODUCE_VERSIONS: VersionRange = VersionRange {
    min: 0,
    max: answered::<km::ProduceRequest>().max,
};

/// The policy table: every API key kafka-protocol knows, one row each (the APIs every policy
/// allows share theirs, as do the inter-broker ones). No wildcard arm, so that a new
/// kafka-protocol version with a new API does not compile until it is classified here.
#[rustfmt::skip]
pub fn rule(key: ApiKey) -> Rule {
    use km::*;
    use Access::{Admin, Write};
    use Denial::{Cluster, ConfigResource, DelegationToken, Group, Topic, TransactionalId};
    match key {
        // api key                                 access denial           audited   versions read and answered
        ApiKey::Produce                     => row(Write, Topic,           NO_AUDIT, PRODUCE_VERSIONS),
        // (Cluster for an idempotent producer, which names no transactional id.)
        ApiKey::InitProducerId              => row(Write, TransactionalId, NO_AUDIT, answered::<InitProducerIdRequest>()),
        // (Cluster at v4+, the brokers' own verification.)
        ApiKey::AddPartitionsToTxn          => row(Write, TransactionalId, NO_AUDIT, answered::<AddPartitionsToTxnRequest>()),
        ApiKey::AddOffsetsToTxn             => row(Write, TransactionalId, NO_AUDIT, answered::<AddOffsetsToTxnRequest>()),
        ApiKey::EndTxn                      => row(Write, TransactionalId, NO_AUDIT, answered::<EndTxnRequest>()),
        ApiKey::TxnOffsetCommit             => row(Write, TransactionalId, NO_AUDIT, answered::<TxnOffsetCommitRequest>()),

        ApiKey::CreateTopics                => row(Admin, Topic,           AUDIT,    answered::<CreateTopicsRequest>()),
        ApiKey::DeleteTopics                => row(Admin, Topic,           AUDIT,    answered::<DeleteTopicsRequest>()),
        ApiKey::CreatePartitions            => row(Admin, Topic,           AUDIT,    answered::<CreatePartitionsRequest>()),
        ApiKey::DeleteRecords               => row(Admin, Topic,           AUDIT,    answered::<DeleteRecordsRequest>()),
        ApiKey::CreateAcls                  => row(Admin, Cluster,         AUDIT,    answered::<CreateAclsRequest>()),
        ApiKey::DeleteAcls                  => row(Admin, Cluster,         AUDIT,    answered::<DeleteAclsRequest>()),
        ApiKey::AlterConfigs                => row(Admin, ConfigResource,  AUDIT,    answered::<AlterConfigsRequest>()),
        ApiKey::IncrementalAlterConfigs     => row(Admin, ConfigResource,  AUDIT,    answered::<IncrementalAlterConfigsRequest>()),
        ApiKey::AlterClientQuotas           => row(Admin, Cluster,         AUDIT,    answered::<AlterClientQuotasRequest>()),
        ApiKey::AlterUserScramCredentials   => row(Admin, Cluster,         AUDIT,    answered::<AlterUserScramCredentialsRequest>()),
        ApiKey::AlterPartitionReassignments => row(Admin, Cluster,         AUDIT,    answered::<AlterPartitionReassignmentsRequest>()),
        ApiKey::ElectLeaders                => row(Admin, Cluster,         AUDIT,    answered::<ElectLeadersRequest>()),
        ApiKey::UpdateFeatures              => row(Admin, Cluster,         AUDIT,    answered::<UpdateFeaturesRequest>()),
        ApiKey::AlterReplicaLogDirs         => row(Admin, Cluster,         AUDIT,    answered::<AlterReplicaLogDirsRequest>()),
        ApiKey::UnregisterBroker            => row(Admin, Cluster,         AUDIT,    answered::<UnregisterBrokerRequest>()),
        ApiKey::DeleteGroups                => row(Admin, Group,           AUDIT,    answered::<DeleteGroupsRequest>()),
        ApiKey::OffsetDelete                => row(Admin, Group,           AUDIT,    answered::<OffsetDeleteRequest>()),
        ApiKey::CreateDelegationToken       => row(Admin, DelegationToken, AUDIT,    answered::<CreateDelegationTokenRequest>()),
        ApiKey::RenewDelegationToken        => row(Admin, DelegationToken, AUDIT,    answered::<RenewDelegationTokenRequest>()),
        ApiKey::ExpireDelegationToken       => row(Admin, DelegationToken, AUDIT,    answered::<ExpireDelegationTokenRequest>()),
        ApiKey::AlterShareGroupOffsets      => row(Admin, Group,           AUDIT,    answered::<AlterShareGroupOffsetsRequest>()),
        ApiKey::DeleteShareGroupOffsets     => row(Admin, Group,           AUDIT,    answered::<DeleteShareGroupOffsetsRequest>()),

        ApiKey::Fetch
        | ApiKey::ListOffsets
        | ApiKey::Metadata
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::SyncGroup
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::SaslHandshake
        | ApiKey::ApiVersions
        | ApiKey::OffsetForLeaderEpoch
        | ApiKey::DescribeAcls
        | ApiKey::DescribeConfigs
        | ApiKey::DescribeLogDirs
        | ApiKey::SaslAuthenticate
        | ApiKey::DescribeDelegationToken
        | ApiKey::ListPartitionReassignments
        | ApiKey::DescribeClientQuotas
        | ApiKey::DescribeUserScramCredentials
        | ApiKey::DescribeQuorum
        | ApiKey::DescribeCluster
        | ApiKey::DescribeProducers
        | ApiKey::DescribeTransactions
        | ApiKey::ListTransactions
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::ConsumerGroupDescribe
        | ApiKey::GetTelemetrySubscriptions
        | ApiKey::PushTelemetry
        | ApiKey::ListConfigResources
        | ApiKey::DescribeTopicPartitions
        | ApiKey::ShareGroupHeartbeat
        | ApiKey::ShareGroupDescribe
        | ApiKey::ShareFetch
        | ApiKey::ShareAcknowledge
        | ApiKey::DescribeShareGroupOffsets => READ,

        // Inter-broker and controller APIs that change the cluster: audited under `full`.
        // (Envelope carries any request a broker forwards to the controller.)
        ApiKey::WriteTxnMarkers
        | ApiKey::Vote
        | ApiKey::BeginQuorumEpoch
        | ApiKey::EndQuorumEpoch
        | ApiKey::AlterPartition
        | ApiKey::Envelope
        | ApiKey::BrokerRegistration
        | ApiKey::BrokerHeartbeat
        | ApiKey::AllocateProducerIds
        | ApiKey::ControllerRegistration
        | ApiKey::AssignReplicasToDirs
        | ApiKey::AddRaftVoter
        | ApiKey::RemoveRaftVoter
        | ApiKey::UpdateRaftVoter
        | ApiKey::InitializeShareGroupState
        | ApiKey::WriteShareGroupState
        | ApiKey::DeleteShareGroupState => INTERNAL_AUDITED,

        // Inter-broker reads: a snapshot, share-group state.
        ApiKey::FetchSnapshot
        | ApiKey::ReadShareGroupState
        | ApiKey::ReadShareGroupStateSummary => INTERNAL,
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
