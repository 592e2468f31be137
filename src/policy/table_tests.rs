use kafka_protocol::messages::ApiKey;

use super::*;
use crate::kafka::requests;
use crate::policy::audited;
use crate::policy::samples::*;

#[test]
fn versions_covered_are_the_request_response_intersection() {
    // Spot checks against kafka-protocol 0.18 (Kafka 4.1): what the report states.
    let v = |key| {
        let r = rule(key).answer.unwrap();
        (r.min, r.max)
    };
    assert_eq!(v(ApiKey::Produce), (0, 13));
    assert_eq!(v(ApiKey::CreateTopics), (2, 7));
    assert_eq!(v(ApiKey::DeleteTopics), (1, 6));
    assert_eq!(v(ApiKey::InitProducerId), (0, 5), "v6 is unstable");
    assert_eq!(v(ApiKey::OffsetDelete), (0, 0));
    for key in natively_denied() {
        let r = rule(key).answer.unwrap();
        assert!(r.min <= r.max, "{key:?}");
    }
}

#[test]
fn every_api_key_is_classified() {
    // `rule` has no wildcard arm: this is the run-time half, over the crate's list.
    let keys: Vec<ApiKey> = ApiKey::iter().collect();
    assert_eq!(
        keys.len(),
        87,
        "kafka-protocol's ApiKey list changed: classify the new APIs"
    );
    for key in keys {
        let r = rule(key);
        match r.access {
            Access::Read | Access::Internal => assert!(r.answer.is_none(), "{key:?}"),
            Access::Write | Access::Admin => {
                let v = r
                    .answer
                    .unwrap_or_else(|| panic!("{key:?} denied without an answer"));
                assert!(v.min <= v.max, "{key:?}");
            }
        }
        // Every API answered natively has a walker, and only those.
        assert_eq!(r.answer.is_some(), requests::parsed(key), "{key:?}");
        // Audited: every admin API, and every inter-broker one that changes the cluster.
        let internal_read = matches!(
            key,
            ApiKey::FetchSnapshot
                | ApiKey::ReadShareGroupState
                | ApiKey::ReadShareGroupStateSummary
        );
        let changes = match r.access {
            Access::Admin => true,
            Access::Internal => !internal_read,
            Access::Read | Access::Write => false,
        };
        assert_eq!(audited(key as i16), changes, "{key:?}");
        assert_eq!(r.audited, changes, "{key:?}");
    }
}

#[test]
fn kraft_and_transaction_marker_apis_are_audited() {
    for key in [
        ApiKey::WriteTxnMarkers,
        ApiKey::AddRaftVoter,
        ApiKey::RemoveRaftVoter,
        ApiKey::UpdateRaftVoter,
        ApiKey::Vote,
        ApiKey::BeginQuorumEpoch,
        ApiKey::EndQuorumEpoch,
        ApiKey::Envelope,
    ] {
        assert!(rule(key).audited, "{key:?}");
        assert_eq!(rule(key).access, Access::Internal, "{key:?}");
    }
    // Api keys kafka-protocol does not know may change anything: audited (under `full`, the
    // only policy that forwards them).
    for api_key in [9999, 4, 93, -1] {
        assert!(audited(api_key), "{api_key}");
    }
}

#[test]
fn a_row_answers_a_denial_exactly_where_the_proxy_reads_the_api() {
    for key in ApiKey::iter() {
        let r = rule(key);
        assert_eq!(r.denial == Denial::Close, r.answer.is_none(), "{key:?}");
        assert_eq!(r.denial.error_code().is_none(), r.denial == Denial::Close);
    }
}
