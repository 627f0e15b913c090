//! Wire types of the identity platform and of the gates in front of Graph: token responses,
//! AADSTS error bodies, the Graph error body, assertion JWT parts and the serve line.

use serde::{Deserialize, Serialize};

/// Successful client-credentials answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    pub(crate) ext_expires_in: u64,
    pub(crate) access_token: String,
}

/// An AADSTS error body.
#[derive(Debug, Serialize)]
pub(crate) struct AadErrorBody {
    pub(crate) error: &'static str,
    pub(crate) error_description: String,
    pub(crate) error_codes: Vec<u32>,
    pub(crate) timestamp: String,
    pub(crate) trace_id: String,
    pub(crate) correlation_id: String,
    pub(crate) error_uri: String,
}

/// `{"error":{...}}` of Graph.
#[derive(Debug, Serialize)]
pub(crate) struct GraphErrorBody {
    pub(crate) error: GraphError,
}

/// The inside of a Graph error body.
#[derive(Debug, Serialize)]
pub(crate) struct GraphError {
    pub(crate) code: String,
    pub(crate) message: String,
    #[serde(rename = "innerError")]
    pub(crate) inner_error: InnerError,
}

/// `innerError` of a Graph error body.
#[derive(Debug, Serialize)]
pub(crate) struct InnerError {
    pub(crate) date: String,
    #[serde(rename = "request-id")]
    pub(crate) request_id: String,
    #[serde(rename = "client-request-id")]
    pub(crate) client_request_id: String,
}

impl GraphErrorBody {
    /// A body stamped with the current time.
    pub(crate) fn new(
        code: &str,
        message: &str,
        request_id: &str,
        client_request_id: &str,
    ) -> Self {
        GraphErrorBody {
            error: GraphError {
                code: code.to_owned(),
                message: message.to_owned(),
                inner_error: InnerError {
                    date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    request_id: request_id.to_owned(),
                    client_request_id: client_request_id.to_owned(),
                },
            },
        }
    }
}

/// Claims of the access tokens the emulator issues (like Entra's v1 app-only tokens).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AccessTokenClaims {
    pub(crate) aud: String,
    pub(crate) iss: String,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    pub(crate) appid: String,
    pub(crate) appidacr: String,
    pub(crate) idtyp: String,
    pub(crate) oid: String,
    pub(crate) roles: Vec<String>,
    pub(crate) sub: String,
    pub(crate) tid: String,
    pub(crate) uti: String,
    pub(crate) ver: String,
}

/// JOSE header of an issued access token.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AccessTokenHeader {
    pub(crate) typ: String,
    pub(crate) alg: String,
    pub(crate) kid: String,
}
