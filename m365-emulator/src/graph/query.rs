//! OData query options as Graph reads them: `$top`, `$select`, `$filter`, `$orderby`, `$skip`,
//! with Graph's refusals for what it does not support.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use super::ApiError;

/// The decoded query string, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string; a system option given twice is refused.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let name = name.trim().to_owned();
            if name.is_empty() {
                continue;
            }
            if name.starts_with('$') && pairs.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                return Err(ApiError::bad_request(
                    "BadRequest",
                    format!(
                        "Query option '{name}' was specified more than once, but it must be specified at most once."
                    ),
                ));
            }
            pairs.push((name, value.into_owned()));
        }
        Ok(Query { pairs })
    }

    /// A value by name (system options case-insensitively, with or without `$`).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let bare = name.trim_start_matches('$');
        self.pairs
            .iter()
            .find(|(n, _)| n.trim_start_matches('$').eq_ignore_ascii_case(bare))
            .map(|(_, v)| v.as_str())
    }

    /// Names of the `$` options present.
    pub(crate) fn system_options(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(|(n, _)| n.starts_with('$'))
            .map(|(n, _)| n.as_str())
    }

    /// Refuses `$` options outside `allowed`.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for name in self.system_options() {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                return Err(ApiError::bad_request(
                    "BadRequest",
                    format!(
                        "Query option '{name}' is not allowed. Make sure that the query option is supported for this request."
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `$top` within `min..=max`, or `default`.
    pub(crate) fn top(
        &self,
        default: usize,
        max: usize,
        code: &'static str,
    ) -> Result<usize, ApiError> {
        let Some(raw) = self.get("$top") else {
            return Ok(default);
        };
        match raw.trim().parse::<i64>() {
            Ok(n) if n >= 1 && usize::try_from(n).is_ok_and(|n| n <= max) => {
                Ok(usize::try_from(n).unwrap_or(default))
            }
            _ => Err(ApiError::bad_request(
                code,
                format!(
                    "Invalid page size specified: '{raw}'. Must be between 1 and {max} inclusive."
                ),
            )),
        }
    }

    /// `$skip` as a non-negative integer (0 when absent).
    pub(crate) fn skip(&self) -> Result<usize, ApiError> {
        let Some(raw) = self.get("$skip") else {
            return Ok(0);
        };
        raw.trim().parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "BadRequest",
                format!("Invalid value '{raw}' for query option '$skip'."),
            )
        })
    }

    /// `$select` checked against the properties the type has (case-insensitive); answers canonical names.
    pub(crate) fn select(
        &self,
        known: &[&'static str],
        type_name: &str,
    ) -> Result<Option<Vec<&'static str>>, ApiError> {
        let Some(raw) = self.get("$select") else {
            return Ok(None);
        };
        let mut chosen = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(found) = known.iter().find(|k| k.eq_ignore_ascii_case(item)) else {
                return Err(ApiError::bad_request(
                    "RequestBroker--ParseUri",
                    format!("Could not find a property named '{item}' on type '{type_name}'."),
                ));
            };
            if !chosen.contains(found) {
                chosen.push(*found);
            }
        }
        Ok(Some(chosen))
    }

    /// The query string without some options, re-encoded (for nextLinks).
    pub(crate) fn encode_without(&self, drop: &[&str], extra: &[(&str, String)]) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.pairs {
            if !drop.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                serializer.append_pair(name, value);
            }
        }
        for (name, value) in extra {
            serializer.append_pair(name, value);
        }
        serializer.finish().replace("%24", "$")
    }

    /// All pairs (for baking into tokens).
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Rebuilds a query from baked pairs.
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Query {
        Query { pairs }
    }
}

/// Comparison operator of a filter clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    pub(crate) fn holds<T: PartialOrd>(self, left: &T, right: &T) -> bool {
        match self {
            Op::Eq => left == right,
            Op::Ne => left != right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
        }
    }
}

/// One clause of a message filter.
#[derive(Debug, Clone)]
pub(crate) enum MessageClause {
    Received(Op, i64),
    IsRead(bool),
}

impl MessageClause {
    /// The property the clause restricts (for the `$orderby` rule).
    pub(crate) fn property(&self) -> &'static str {
        match self {
            MessageClause::Received(..) => "receivedDateTime",
            MessageClause::IsRead(_) => "isRead",
        }
    }
}

fn unsupported_filter(clause: &str) -> ApiError {
    ApiError::bad_request(
        "ErrorInvalidUrlQueryFilter",
        format!("The query filter '{clause}' is not supported."),
    )
}

/// Parses `receivedDateTime ge 2024-01-01T00:00:00Z and isRead eq false` style filters.
pub(crate) fn message_filter(raw: &str, delta: bool) -> Result<Vec<MessageClause>, ApiError> {
    let mut clauses = Vec::new();
    for clause in split_and(raw) {
        let tokens: Vec<&str> = clause.split_whitespace().collect();
        let [property, op, value] = tokens.as_slice() else {
            return Err(unsupported_filter(&clause));
        };
        let op = Op::parse(op).ok_or_else(|| unsupported_filter(&clause))?;
        if property.eq_ignore_ascii_case("receivedDateTime") {
            if delta && !matches!(op, Op::Ge | Op::Gt) {
                return Err(unsupported_filter(&clause));
            }
            let value = value.trim_matches('\'');
            let parsed = DateTime::parse_from_rfc3339(value)
                .map(|d| d.with_timezone(&Utc).timestamp())
                .map_err(|_| ApiError::bad_request("BadRequest", format!("The DateTimeOffset text '{value}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?'.")))?;
            clauses.push(MessageClause::Received(op, parsed));
        } else if property.eq_ignore_ascii_case("isRead") && !delta && op == Op::Eq {
            match value.to_ascii_lowercase().as_str() {
                "true" => clauses.push(MessageClause::IsRead(true)),
                "false" => clauses.push(MessageClause::IsRead(false)),
                _ => return Err(unsupported_filter(&clause)),
            }
        } else {
            return Err(unsupported_filter(&clause));
        }
    }
    if clauses.is_empty() {
        return Err(unsupported_filter(raw));
    }
    Ok(clauses)
}

/// Splits a filter at top-level ` and ` (case-insensitive, outside quotes and parentheses).
pub(crate) fn split_and(raw: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut current = String::new();
    let words: Vec<&str> = raw.split(' ').collect();
    for word in words {
        if !quoted && depth == 0 && word.eq_ignore_ascii_case("and") && !current.trim().is_empty() {
            parts.push(std::mem::take(&mut current).trim().to_owned());
            continue;
        }
        for ch in word.chars() {
            match ch {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => depth -= 1,
                _ => {}
            }
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

/// `$orderby` for messages: `receivedDateTime [asc|desc]`; answers descending?
pub(crate) fn message_orderby(raw: &str, clauses: &[MessageClause]) -> Result<bool, ApiError> {
    let mut words = raw.split_whitespace();
    let property = words.next().unwrap_or_default();
    let direction = words.next().unwrap_or("asc");
    if !property.eq_ignore_ascii_case("receivedDateTime") || words.next().is_some() {
        return Err(ApiError::bad_request(
            "BadRequest",
            format!("The $orderby expression '{raw}' is not supported."),
        ));
    }
    if let Some(first) = clauses.first()
        && !first.property().eq_ignore_ascii_case(property)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InefficientFilter",
            "The restriction or sort order is too complex for this operation.",
        ));
    }
    match direction.to_ascii_lowercase().as_str() {
        "desc" => Ok(true),
        "asc" => Ok(false),
        _ => Err(ApiError::bad_request(
            "BadRequest",
            format!("The $orderby expression '{raw}' is not supported."),
        )),
    }
}

/// A timestamp the way Graph writes it (`2024-05-01T10:15:00Z`).
pub(crate) fn graph_time(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the query string, parsing and the filter/orderby readers answer or refuse.
        #[test]
        fn arbitrary_query_strings_never_panic(raw in "[ -~]{0,120}") {
            if let Ok(query) = Query::parse(Some(&raw)) {
                let _ = query.top(10, 1000, "BadRequest");
                let _ = query.skip();
                let _ = query.select(&["id", "subject"], "t");
                if let Some(filter) = query.get("$filter") {
                    if let Ok(clauses) = message_filter(filter, false) {
                        let _ = message_orderby("receivedDateTime desc", &clauses);
                    }
                    let _ = message_filter(filter, true);
                }
            }
        }

        /// `$top` accepts exactly 1..=max.
        #[test]
        fn top_accepts_exactly_the_documented_range(n in -5i64..2_000) {
            let query = Query::parse(Some(&format!("$top={n}"))).unwrap();
            prop_assert_eq!(query.top(10, 1000, "BadRequest").is_ok(), (1..=1000).contains(&n));
        }
    }

    #[test]
    fn filters_parse_the_documented_subset() {
        let clauses = message_filter(
            "receivedDateTime ge 2024-01-01T00:00:00Z and isRead eq false",
            false,
        )
        .unwrap();
        assert_eq!(clauses.len(), 2);
        assert!(
            message_filter("isRead eq false", true).is_err(),
            "delta filters only on receivedDateTime"
        );
        assert!(
            message_filter("receivedDateTime lt 2024-01-01T00:00:00Z", true).is_err(),
            "delta: ge/gt only"
        );
        assert!(message_filter("subject eq 'x'", false).is_err());
        let filtered = message_filter(
            "isRead eq false and receivedDateTime ge 2024-01-01T00:00:00Z",
            false,
        )
        .unwrap();
        assert_eq!(
            message_orderby("receivedDateTime desc", &filtered)
                .unwrap_err()
                .code,
            "InefficientFilter"
        );
        assert!(message_orderby("receivedDateTime desc", &clauses).unwrap());
        assert!(
            Query::parse(Some("$top=1&$top=2")).is_err(),
            "an option twice"
        );
    }
}
