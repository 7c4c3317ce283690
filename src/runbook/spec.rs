//! The serde mirror of a runbook file: every key of SPEC §3 and nothing else.
//!
//! These types know nothing: they accept any value of the right shape and
//! reject unknown keys. `validate` turns them into the model the rest of the
//! code trusts.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookSpec {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub triggers: Vec<TriggerSpec>,
    /// Kept in file order by the position index, not by this map.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    #[serde(default)]
    pub secrets: Vec<String>,
    pub http: Option<HttpSpec>,
    pub concurrency: Option<String>,
    pub catch_up: Option<String>,
    pub catch_up_within: Option<String>,
    pub timeout: Option<String>,
    pub retry: Option<RetrySpec>,
    pub limit: Option<LimitSpec>,
    pub expect: Option<ExpectSpec>,
    pub steps: Option<Vec<StepSpec>>,
    /// The one-step form: `run:` at the top level instead of `steps:`.
    pub run: Option<String>,
}

/// One entry of `triggers:`: either the bare word `manual` or a map with
/// exactly one of `cron`, `every`, `webhook`, `manual`.
#[derive(Debug, Default)]
pub struct TriggerSpec {
    pub bare: Option<String>,
    pub fields: TriggerFields,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerFields {
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub every: Option<String>,
    pub webhook: Option<WebhookSpec>,
    /// `- manual: {}` is accepted as well as the bare word.
    pub manual: Option<serde_yaml::Value>,
}

impl<'de> Deserialize<'de> for TriggerSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TriggerVisitor;
        impl<'de> Visitor<'de> for TriggerVisitor {
            type Value = TriggerSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`manual` or a map with one of `cron`, `every`, `webhook`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TriggerSpec, E> {
                Ok(TriggerSpec {
                    bare: Some(v.to_string()),
                    fields: TriggerFields::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TriggerSpec, A::Error> {
                let fields =
                    TriggerFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TriggerSpec { bare: None, fields })
            }
        }
        deserializer.deserialize_any(TriggerVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub auth: Option<String>,
    pub secret: Option<String>,
    pub when: Option<String>,
    pub dedup: Option<String>,
    pub dedup_window: Option<String>,
    pub path: Option<String>,
    pub insecure: Option<bool>,
    pub content_type: Option<String>,
    /// `hmac` preset: the header carrying the signature.
    pub header: Option<String>,
    /// `hmac` preset: a prefix before the signature, e.g. `sha256=`.
    pub prefix: Option<String>,
    /// `hmac` preset: `hex` (default) or `base64`.
    pub encoding: Option<String>,
    /// `basic` preset: the expected user name (the password is the secret).
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub default: Option<serde_yaml::Value>,
    pub description: Option<String>,
    pub required: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default)]
    pub allow: Vec<String>,
    pub min_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub attempts: Option<u32>,
    pub delay: Option<String>,
    pub backoff: Option<f64>,
    pub max_delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub runs: Option<u32>,
    pub per: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    pub success_within: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: Option<String>,
    pub description: Option<String>,
    pub run: Option<String>,
    pub file: Option<String>,
    #[serde(rename = "if")]
    pub condition: Option<String>,
    pub timeout: Option<String>,
    pub continue_on_error: Option<bool>,
}

/// Every top-level key, for did-you-mean hints.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "enabled",
    "triggers",
    "params",
    "secrets",
    "http",
    "concurrency",
    "catch_up",
    "catch_up_within",
    "timeout",
    "retry",
    "limit",
    "expect",
    "steps",
    "run",
];
