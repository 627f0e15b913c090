//! Property tests for everything the emulator takes from outside: `--faults` specs, token
//! endpoint forms, client assertions and bearer tokens. Whatever arrives, the answer is a
//! documented error (AADSTS or Graph's), never a 5xx, a panic or a token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use m365_emulator::FaultConfig;
use proptest::prelude::*;
use serde_json::Value;

proptest! {
    #[test]
    fn fault_specs_never_panic(spec in "\\PC{0,40}") {
        let _ = FaultConfig::parse_spec(&spec);
    }

    #[test]
    fn valid_fault_specs_round_trip(a in 0.0f64..=1.0, b in 0.0f64..=1.0, c in 0.0f64..=1.0, d in 0.0f64..=1.0, slow in 0u64..10_000) {
        let spec = format!("503={a},504={b},reset={c},truncate={d},slow={slow}");
        let parsed = FaultConfig::parse_spec(&spec).unwrap();
        prop_assert_eq!(parsed, FaultConfig { status_503: a, status_504: b, reset: c, truncate: d, slow_ms: slow });
    }

    #[test]
    fn out_of_range_rates_are_refused_naming_the_field(rate in prop_oneof![1.0001f64..1e9, -1e9f64..-0.0001]) {
        let error = FaultConfig::parse_spec(&format!("reset={rate}")).unwrap_err().to_string();
        prop_assert!(error.contains("reset"), "{}", error);
    }
}

fn form_field() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        Just("grant_type".to_owned()),
        Just("client_id".to_owned()),
        Just("client_secret".to_owned()),
        Just("scope".to_owned()),
        Just("client_assertion".to_owned()),
        Just("client_assertion_type".to_owned()),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        Just("client_credentials".to_owned()),
        Just("urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned()),
        Just("https://graph.microsoft.com/.default".to_owned()),
        Just("eyJhbGciOiJQUzI1NiJ9.e30.AAAA".to_owned()),
        "\\PC{0,30}",
    ];
    (key, value)
}

#[test]
fn arbitrary_token_requests_get_documented_errors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emu = runtime.block_on(start(91));
    let url = token_url(&emu, &emu.tenant_id());
    let client = client();
    let secret = emu.client_secret();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(form_field(), 0..7), |fields| {
            let (status, body) = runtime.block_on(async {
                let response = client.post(&url).form(&fields).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            });
            let has_secret = fields
                .iter()
                .any(|(k, v)| k == "client_secret" && *v == secret);
            prop_assert!(
                status == 400 || status == 401 || (status == 200 && has_secret),
                "{} {}",
                status,
                body
            );
            if status != 200 {
                let description = body["error_description"].as_str().unwrap_or_default();
                prop_assert!(description.starts_with("AADSTS"), "{}", body);
                prop_assert!(body["error_codes"].is_array(), "{}", body);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_assertions_and_bearer_tokens_are_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emu = runtime.block_on(start(92));
    let (id, scope) = (emu.client_id(), graph_scope(&emu));
    let client = client();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let jwtish = prop_oneof![
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,60}",
        "\\PC{0,80}"
    ];
    runner
        .run(&jwtish, |junk| {
            let (status, body) =
                runtime.block_on(post_token(&emu, &assertion_form(&id, &scope, &junk)));
            prop_assert!(status == 400 || status == 401, "{} {}", status, body);
            prop_assert!(
                body["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("AADSTS")
            );
            let graph = runtime.block_on(async {
                client
                    .get(format!("{}v1.0/users", emu.graph_url()))
                    .header("authorization", format!("Bearer {junk}"))
                    .send()
                    .await
            });
            // Header values a client refuses to send never reach the emulator.
            if let Ok(response) = graph {
                prop_assert_eq!(response.status().as_u16(), 401);
            }
            Ok(())
        })
        .unwrap();
}
