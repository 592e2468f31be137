//! The policy table: every API key of kafka-protocol, what it needs from a policy and how a
//! denial of it is answered.

use kafka_protocol::messages::{self as km, ApiKey};
use kafka_protocol::protocol::VersionRange;

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

/// One entry of the table: what an API needs and how a denial is answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// What the API needs.
    pub access: Access,
    /// `Some(versions)`: a denial is answered with the API's own error response at these
    /// versions (the ones the proxy can read the request of and encode the response of);
    /// other versions, and `None`, close the connection.
    pub answer: Option<VersionRange>,
}

const READ: Rule = Rule {
    access: Access::Read,
    answer: None,
};

const INTERNAL: Rule = Rule {
    access: Access::Internal,
    answer: None,
};

const fn write(versions: VersionRange) -> Rule {
    Rule {
        access: Access::Write,
        answer: Some(versions),
    }
}

const fn admin(versions: VersionRange) -> Rule {
    Rule {
        access: Access::Admin,
        answer: Some(versions),
    }
}

/// Produce versions the proxy answers: kafka-protocol's (v3+), and v0-v2, which Kafka 3.x
/// brokers still accept and whose response the proxy writes by hand.
const PRODUCE_VERSIONS: VersionRange = VersionRange {
    min: 0,
    max: versions_of::<km::ProduceRequest, km::ProduceResponse>().max,
};

/// The policy table: every API key kafka-protocol knows. No wildcard arm, so that a new
/// kafka-protocol version with a new API does not compile until it is classified here.
pub fn rule(key: ApiKey) -> Rule {
    use km::*;
    match key {
        ApiKey::Produce => write(PRODUCE_VERSIONS),
        ApiKey::InitProducerId => {
            write(versions_of::<InitProducerIdRequest, InitProducerIdResponse>())
        }
        ApiKey::AddPartitionsToTxn => write(versions_of::<
            AddPartitionsToTxnRequest,
            AddPartitionsToTxnResponse,
        >()),
        ApiKey::AddOffsetsToTxn => {
            write(versions_of::<AddOffsetsToTxnRequest, AddOffsetsToTxnResponse>())
        }
        ApiKey::EndTxn => write(versions_of::<EndTxnRequest, EndTxnResponse>()),
        ApiKey::TxnOffsetCommit => {
            write(versions_of::<TxnOffsetCommitRequest, TxnOffsetCommitResponse>())
        }

        ApiKey::CreateTopics => admin(versions_of::<CreateTopicsRequest, CreateTopicsResponse>()),
        ApiKey::DeleteTopics => admin(versions_of::<DeleteTopicsRequest, DeleteTopicsResponse>()),
        ApiKey::CreatePartitions => admin(versions_of::<
            CreatePartitionsRequest,
            CreatePartitionsResponse,
        >()),
        ApiKey::DeleteRecords => {
            admin(versions_of::<DeleteRecordsRequest, DeleteRecordsResponse>())
        }
        ApiKey::CreateAcls => admin(versions_of::<CreateAclsRequest, CreateAclsResponse>()),
        ApiKey::DeleteAcls => admin(versions_of::<DeleteAclsRequest, DeleteAclsResponse>()),
        ApiKey::AlterConfigs => admin(versions_of::<AlterConfigsRequest, AlterConfigsResponse>()),
        ApiKey::IncrementalAlterConfigs => admin(versions_of::<
            IncrementalAlterConfigsRequest,
            IncrementalAlterConfigsResponse,
        >()),
        ApiKey::AlterClientQuotas => admin(versions_of::<
            AlterClientQuotasRequest,
            AlterClientQuotasResponse,
        >()),
        ApiKey::AlterUserScramCredentials => admin(versions_of::<
            AlterUserScramCredentialsRequest,
            AlterUserScramCredentialsResponse,
        >()),
        ApiKey::AlterPartitionReassignments => admin(versions_of::<
            AlterPartitionReassignmentsRequest,
            AlterPartitionReassignmentsResponse,
        >()),
        ApiKey::ElectLeaders => admin(versions_of::<ElectLeadersRequest, ElectLeadersResponse>()),
        ApiKey::UpdateFeatures => {
            admin(versions_of::<UpdateFeaturesRequest, UpdateFeaturesResponse>())
        }
        ApiKey::AlterReplicaLogDirs => admin(versions_of::<
            AlterReplicaLogDirsRequest,
            AlterReplicaLogDirsResponse,
        >()),
        ApiKey::UnregisterBroker => admin(versions_of::<
            UnregisterBrokerRequest,
            UnregisterBrokerResponse,
        >()),
        ApiKey::DeleteGroups => admin(versions_of::<DeleteGroupsRequest, DeleteGroupsResponse>()),
        ApiKey::OffsetDelete => admin(versions_of::<OffsetDeleteRequest, OffsetDeleteResponse>()),
        ApiKey::CreateDelegationToken => admin(versions_of::<
            CreateDelegationTokenRequest,
            CreateDelegationTokenResponse,
        >()),
        ApiKey::RenewDelegationToken => admin(versions_of::<
            RenewDelegationTokenRequest,
            RenewDelegationTokenResponse,
        >()),
        ApiKey::ExpireDelegationToken => admin(versions_of::<
            ExpireDelegationTokenRequest,
            ExpireDelegationTokenResponse,
        >()),
        ApiKey::AlterShareGroupOffsets => admin(versions_of::<
            AlterShareGroupOffsetsRequest,
            AlterShareGroupOffsetsResponse,
        >()),
        ApiKey::DeleteShareGroupOffsets => admin(versions_of::<
            DeleteShareGroupOffsetsRequest,
            DeleteShareGroupOffsetsResponse,
        >()),

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

        ApiKey::WriteTxnMarkers
        | ApiKey::Vote
        | ApiKey::BeginQuorumEpoch
        | ApiKey::EndQuorumEpoch
        | ApiKey::AlterPartition
        | ApiKey::Envelope
        | ApiKey::FetchSnapshot
        | ApiKey::BrokerRegistration
        | ApiKey::BrokerHeartbeat
        | ApiKey::AllocateProducerIds
        | ApiKey::ControllerRegistration
        | ApiKey::AssignReplicasToDirs
        | ApiKey::AddRaftVoter
        | ApiKey::RemoveRaftVoter
        | ApiKey::UpdateRaftVoter
        | ApiKey::InitializeShareGroupState
        | ApiKey::ReadShareGroupState
        | ApiKey::WriteShareGroupState
        | ApiKey::DeleteShareGroupState
        | ApiKey::ReadShareGroupStateSummary => INTERNAL,
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
