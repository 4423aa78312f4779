//! The one tool-calling rule every wire format follows, so a gateway that
//! translates between formats can be checked for the same decision end to end.
//!
//! - The last message is a tool result: answer `Tool result: <result text>`.
//! - Otherwise, tools are declared and the tool choice does not forbid them:
//!   call the forced tool (or the first one), with an arguments object whose
//!   keys are the schema's `required` properties (else its first property,
//!   else `"input"`) and whose values are the last user message's text.
//! - Otherwise: an ordinary text answer.

use serde_json::{Map, Value};

use super::text;

/// A declared tool: its name and its JSON schema for the arguments.
pub struct Tool {
    pub name: String,
    pub schema: Value,
}

/// Tool choice, normalized across formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Auto,
    None,
    /// A tool must be called; any will do.
    Any,
    Named(String),
}

#[derive(Debug, PartialEq)]
pub enum Plan {
    Text,
    /// Answer with this text (already prefixed).
    ToolResult(String),
    Call {
        name: String,
        args: Value,
    },
}

/// Applies the rule. `Err` names a forced tool that was never declared,
/// which real providers reject with a 400.
pub fn plan(
    tools: &[Tool],
    choice: &Choice,
    last_tool_result: Option<String>,
    last_user_text: &str,
) -> Result<Plan, String> {
    if let Some(r) = last_tool_result {
        return Ok(Plan::ToolResult(format!("Tool result: {r}")));
    }
    let Some(first) = tools.first() else {
        return Ok(Plan::Text);
    };
    let tool = match choice {
        Choice::None => return Ok(Plan::Text),
        Choice::Auto | Choice::Any => first,
        Choice::Named(n) => tools
            .iter()
            .find(|t| &t.name == n)
            .ok_or_else(|| format!("tool_choice names '{n}', which is not among the tools"))?,
    };
    Ok(Plan::Call {
        name: tool.name.clone(),
        args: arguments(&tool.schema, last_user_text),
    })
}

/// The deterministic arguments object for `schema`.
pub fn arguments(schema: &Value, value: &str) -> Value {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys: Vec<&str> = if required.is_empty() {
        let first = schema
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|p| p.keys().next())
            .map(String::as_str);
        vec![first.unwrap_or("input")]
    } else {
        required
    };
    let mut obj = Map::new();
    for k in keys {
        obj.insert(k.to_string(), Value::String(value.to_string()));
    }
    Value::Object(obj)
}

/// Splits a JSON string into up to four pieces on char boundaries, the way
/// providers stream tool arguments in fragments that are not JSON on their own.
pub fn pieces(s: &str) -> Vec<String> {
    let n = (s.len() / 4).clamp(1, 4);
    let target = s.len().div_ceil(n);
    let mut out = Vec::with_capacity(n);
    let mut cur = String::new();
    for ch in s.chars() {
        cur.push(ch);
        if cur.len() >= target && out.len() + 1 < n {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// Output tokens billed for a call: its name and arguments, at least one.
pub fn call_tokens(name: &str, args_json: &str) -> u64 {
    text::estimate_tokens(name.len() + args_json.len()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, schema: Value) -> Tool {
        Tool {
            name: name.into(),
            schema,
        }
    }

    #[test]
    fn arguments_follow_required_then_first_property_then_input() {
        let s = json!({"type":"object","properties":{"a":{},"b":{}},"required":["b","a"]});
        assert_eq!(arguments(&s, "q"), json!({"a":"q","b":"q"}));
        let s = json!({"type":"object","properties":{"city":{"type":"string"}}});
        assert_eq!(arguments(&s, "Paris"), json!({"city":"Paris"}));
        assert_eq!(arguments(&json!({}), "x"), json!({"input":"x"}));
    }

    #[test]
    fn plan_precedence() {
        let tools = [tool("one", json!({})), tool("two", json!({}))];
        let call = |choice: &Choice| plan(&tools, choice, None, "hi");
        assert_eq!(
            call(&Choice::Auto),
            Ok(Plan::Call {
                name: "one".into(),
                args: json!({"input":"hi"})
            })
        );
        assert!(matches!(call(&Choice::Named("two".into())),
            Ok(Plan::Call { name, .. }) if name == "two"));
        assert_eq!(call(&Choice::None), Ok(Plan::Text));
        assert!(call(&Choice::Named("three".into())).is_err());
        assert_eq!(
            plan(&tools, &Choice::Any, Some("42".into()), "hi"),
            Ok(Plan::ToolResult("Tool result: 42".into()))
        );
        assert_eq!(plan(&[], &Choice::Any, None, "hi"), Ok(Plan::Text));
    }

    #[test]
    fn pieces_rejoin_and_are_several() {
        for s in [
            "{}",
            r#"{"city":"Paris"}"#,
            r#"{"q":"héllo wörld, ünïcode"}"#,
        ] {
            let p = pieces(s);
            assert_eq!(p.concat(), s);
            assert!(p.len() <= 4);
        }
        assert_eq!(pieces(r#"{"city":"Paris"}"#).len(), 4);
    }
}
