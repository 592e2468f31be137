//! The audit of requests that change the cluster: what they change and what the broker
//! answered, for the connection's structured log line.

use kafka_protocol::messages::ApiKey;

use super::{rule, PolicyError};
use crate::kafka::codec;
use crate::kafka::frame::RequestHeader;
use crate::kafka::requests::{self, Capped, Request, Topic};
use crate::kafka::wire::Walker;
use crate::topics::TopicNames;

/// True for the APIs whose every request has its audit line written: the ones that change the
/// cluster (the table's `audited` column), and api keys kafka-protocol does not know, which
/// only `full` forwards and which may change anything (their line names them "unknown api key
/// N vM"). Reads only the table. OffsetCommit is audited per request, when it resets offsets
/// from outside group membership (see [`crate::connection`]'s plan and
/// [`requests::offset_commit_outside_membership`]).
pub fn audited(api_key: i16) -> bool {
    ApiKey::try_from(api_key).map_or(true, |key| rule(key).audited)
}

/// The API of a request or response the policy reads at `version`: `None` when it reads
/// nothing of that API (unknown keys included), an error at a version it cannot read.
fn readable(api_key: i16, version: i16) -> Result<Option<ApiKey>, PolicyError> {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Ok(None);
    };
    if !requests::parsed(key) {
        return Ok(None);
    }
    match rule(key).answer {
        Some(v) if (v.min..=v.max).contains(&version) => Ok(Some(key)),
        _ => Err(PolicyError::UnsupportedVersion { api_key, version }),
    }
}

/// The resources a request acts on, for its audit line: topics, partitions, groups, ACL
/// bindings, configuration resources and keys (never values), quota entities, SCRAM users
/// (never credentials), and so on, at most [`requests::AUDIT_CAP`] entries and then a count of
/// the rest. Works for every request the policy may deny natively (Produce and transactions
/// too, for denial lines); empty for the others. `frame` as for [`decide`](super::decide).
/// A topic the request names by id only is named by the name `topics` knows for that id, or
/// shown as an id whose name is unknown.
pub fn audit_resources(
    header: &RequestHeader,
    frame: &[u8],
    topics: &TopicNames,
) -> Result<Vec<String>, PolicyError> {
    let (api_key, version) = (header.api_key, header.api_version);
    let malformed = |reason| PolicyError::Malformed {
        api_key,
        version,
        reason,
    };
    match ApiKey::try_from(api_key) {
        // Nothing of it can be read: its header version is unknown too.
        Err(_) => return Ok(vec![format!("unknown api key {api_key} v{version}")]),
        Ok(ApiKey::OffsetCommit) => {
            let body = requests::request_body(frame, api_key, version).map_err(malformed)?;
            let commit = requests::offset_commit(version, body).map_err(malformed)?;
            let mut out = Capped::<String>::default();
            let group = requests::clean_str(&commit.group);
            for (t, parts) in &commit.topics {
                for (p, offset) in parts {
                    out.push(|| {
                        format!("{group}: {}-{p} to offset {offset}", requests::clean_str(t))
                    });
                }
            }
            if commit.topics.is_empty() {
                out.push(|| group.clone());
            }
            return Ok(out.finish());
        }
        Ok(_) => {}
    }
    let Some(key) = readable(api_key, version)? else {
        return Ok(Vec::new());
    };
    let body = requests::request_body(frame, api_key, version).map_err(malformed)?;
    let request = requests::parse(key, version, body).map_err(malformed)?;
    let mut out = Capped::<String>::default();
    describe(&request, topics, &mut out);
    Ok(out.finish())
}

/// The broker's answer to an audited request: (resource, error code) pairs in response order,
/// ("", code) for a top-level error code, with the same cap as [`audit_resources`] (the last
/// entry then counts the rest and carries the first error among them). `payload` is the
/// response WITHOUT its length prefix (response header included); `api_key` and `version` are
/// the request's. Empty for requests that are not [`audited`], bar OffsetCommit (audited per
/// request), and for api keys the proxy does not know.
pub fn audit_outcome(
    api_key: i16,
    version: i16,
    payload: &[u8],
) -> Result<Vec<(String, i16)>, PolicyError> {
    let offset_commit = api_key == ApiKey::OffsetCommit as i16;
    if !audited(api_key) && !offset_commit {
        return Ok(Vec::new());
    }
    let key = if offset_commit {
        if !requests::OFFSET_COMMIT_VERSIONS.contains(&version) {
            return Err(PolicyError::UnsupportedVersion { api_key, version });
        }
        ApiKey::OffsetCommit
    } else {
        let Some(key) = readable(api_key, version)? else {
            return Ok(Vec::new());
        };
        key
    };
    let malformed = |reason| PolicyError::Malformed {
        api_key,
        version,
        reason,
    };
    let mut w = Walker::new(payload);
    w.response_header(codec::response_header_version(api_key, version))
        .map_err(malformed)?;
    let rest = w.take(0).map_err(malformed)?;
    // The walker hands out subslices of `payload`: the empty one starts where the body does.
    let body = &payload[rest.as_ptr() as usize - payload.as_ptr() as usize..];
    let mut out = Capped::<(String, i16)>::default();
    requests::outcome(key, version, body, &mut out).map_err(malformed)?;
    Ok(out.finish())
}

// ---------------------------------------------------------------------------------------------
// Audit text of requests

fn describe(request: &Request, names: &TopicNames, out: &mut Capped<String>) {
    use requests::clean_str as c;
    let topic_name = |t: &Topic| names.text(&t.name, &t.id);
    let partitions = |out: &mut Capped<String>, prefix: &str, topics: &[Topic]| {
        for t in topics {
            for p in &t.partitions {
                out.push(|| format!("{prefix}{}", names.partition_text(&t.name, &t.id, *p)));
            }
        }
    };
    let validate = |validate_only: bool| {
        if validate_only {
            " (validate only)"
        } else {
            ""
        }
    };
    match request {
        Request::Produce {
            transactional_id,
            topics,
            ..
        } => {
            if let Some(t) = transactional_id {
                out.push(|| format!("transactional id {}", c(t)));
            }
            partitions(out, "", topics);
        }
        Request::CreateTopics {
            topics,
            validate_only,
        } => {
            for t in topics {
                out.push(|| format!("{}{}", c(t), validate(*validate_only)));
            }
        }
        Request::DeleteTopics(topics) => {
            for t in topics {
                out.push(|| topic_name(t));
            }
        }
        Request::CreatePartitions {
            topics,
            validate_only,
        } => {
            for (t, count) in topics {
                out.push(|| format!("{} to {count} partitions{}", c(t), validate(*validate_only)));
            }
        }
        Request::DeleteRecords(topics) => {
            for (t, parts) in topics {
                for (p, offset) in parts {
                    out.push(|| format!("{}-{p} before offset {offset}", c(t)));
                }
            }
        }
        Request::CreateAcls(acls) => {
            for acl in acls {
                out.push(|| requests::acl_text(acl));
            }
        }
        Request::DeleteAcls(filters) => {
            for acl in filters {
                out.push(|| format!("matching {}", requests::acl_text(acl)));
            }
        }
        Request::AlterConfigs {
            resources,
            validate_only,
        } => {
            for r in resources {
                out.push(|| {
                    let keys: Vec<String> = r
                        .keys
                        .iter()
                        .take(requests::AUDIT_CAP)
                        .map(|(k, op)| match op {
                            Some(op) => format!("{} {}", requests::config_operation(*op), c(k)),
                            None => format!("set {}", c(k)),
                        })
                        .collect();
                    let more = r.keys.len().saturating_sub(requests::AUDIT_CAP);
                    format!(
                        "{}:{}: {}{}{}",
                        requests::config_type(r.resource_type),
                        c(&r.name),
                        keys.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        },
                        validate(*validate_only)
                    )
                });
            }
        }
        Request::AlterClientQuotas {
            entries,
            validate_only,
        } => {
            for e in entries {
                out.push(|| {
                    let ops: Vec<String> = e
                        .ops
                        .iter()
                        .take(requests::AUDIT_CAP)
                        .map(|(k, value, remove)| {
                            if *remove {
                                format!("remove {}", c(k))
                            } else {
                                format!("{}={value}", c(k))
                            }
                        })
                        .collect();
                    format!(
                        "{}: {}{}",
                        requests::quota_entity_text(&e.entity),
                        ops.join(", "),
                        validate(*validate_only)
                    )
                });
            }
        }
        Request::AlterUserScramCredentials(changes) => {
            for (user, mechanism, upsert) in changes {
                out.push(|| {
                    format!(
                        "{} {} {}",
                        if *upsert { "upsert" } else { "delete" },
                        c(user),
                        requests::scram_mechanism(*mechanism)
                    )
                });
            }
        }
        Request::AlterPartitionReassignments(topics) => {
            for (t, parts) in topics {
                for (p, replicas) in parts {
                    out.push(|| match replicas {
                        Some(r) => format!("{}-{p} to replicas {r:?}", c(t)),
                        None => format!("{}-{p} cancel", c(t)),
                    });
                }
            }
        }
        Request::ElectLeaders {
            election_type,
            topics,
        } => {
            let kind = if *election_type == 1 {
                "unclean"
            } else {
                "preferred"
            };
            match topics {
                None => out.push(|| format!("all partitions ({kind})")),
                Some(topics) => {
                    for t in topics {
                        for p in &t.partitions {
                            out.push(|| format!("{}-{p} ({kind})", c(&t.name)));
                        }
                    }
                }
            }
        }
        Request::UpdateFeatures {
            features,
            validate_only,
        } => {
            for (f, level) in features {
                out.push(|| format!("{} to level {level}{}", c(f), validate(*validate_only)));
            }
        }
        Request::AlterReplicaLogDirs(dirs) => {
            for (dir, topics) in dirs {
                for t in topics {
                    for p in &t.partitions {
                        out.push(|| format!("{}-{p} to {}", c(&t.name), c(dir)));
                    }
                }
            }
        }
        Request::UnregisterBroker(id) => out.push(|| format!("broker {id}")),
        Request::InitProducerId(transactional_id) => out.push(|| match transactional_id {
            Some(t) => format!("transactional id {}", c(t)),
            None => "idempotent producer".to_owned(),
        }),
        Request::AddPartitionsToTxn(transactions) => {
            for (txn, topics) in transactions {
                partitions(out, &format!("{}: ", c(txn)), topics);
            }
        }
        Request::AddOffsetsToTxn {
            transactional_id,
            group,
        } => out.push(|| format!("{}: group {}", c(transactional_id), c(group))),
        Request::EndTxn {
            transactional_id,
            committed,
        } => out.push(|| {
            format!(
                "{}: {}",
                c(transactional_id),
                if *committed { "commit" } else { "abort" }
            )
        }),
        Request::TxnOffsetCommit {
            transactional_id,
            group,
            topics,
        } => partitions(
            out,
            &format!("{} group {}: ", c(transactional_id), c(group)),
            topics,
        ),
        Request::DeleteGroups(groups) => {
            for g in groups {
                out.push(|| c(g));
            }
        }
        Request::OffsetDelete { group, topics } => {
            partitions(out, &format!("{}: ", c(group)), topics)
        }
        Request::CreateDelegationToken { owner, renewers } => {
            match owner {
                Some((t, n)) => out.push(|| format!("owner {}:{}", c(t), c(n))),
                None => out.push(|| "owner: the requester".to_owned()),
            }
            for (t, n) in renewers {
                out.push(|| format!("renewer {}:{}", c(t), c(n)));
            }
        }
        // The token is named by its HMAC only, which is a secret.
        Request::RenewDelegationToken | Request::ExpireDelegationToken => {}
        Request::AlterShareGroupOffsets { group, topics } => {
            for (t, parts) in topics {
                for (p, offset) in parts {
                    out.push(|| format!("{}: {}-{p} to offset {offset}", c(group), c(t)));
                }
            }
        }
        Request::DeleteShareGroupOffsets { group, topics } => {
            for t in topics {
                out.push(|| format!("{}: {}", c(group), c(t)));
            }
        }
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
