//! Constrained outputs complete within their token budget on the packaged Gemma model: the
//! documentation's examples at their documented budgets, a generated set of schemas at budgets
//! from 16 to 512 (valid output, or `ConstraintUnfinished` only when even the shortest instance
//! cannot fit), and regexes and choice lists at small budgets.

#[path = "support/schemas.rs"]
mod schemas;

use serde_json::{json, Value};
use steadytext_core::{Constraint, CoreError, GenerateRequest, Generation, Generator};

/// One generator shared by the tests of this file (they run on parallel threads).
fn generator() -> &'static Generator {
    steadytext_testkit::gemma::shared()
}

fn req(prompt: &str, max_tokens: u32, constraint: Constraint) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        max_tokens,
        seed: 42,
        constraint: Some(constraint),
        special_tokens: false,
    }
}

/// Runs the requests in batches of 8 and returns each request's result.
fn run(reqs: &[GenerateRequest]) -> Vec<Result<Generation, CoreError>> {
    reqs.chunks(8).flat_map(|chunk| generator().generate_batch(chunk).unwrap()).collect()
}

/// Why `text` is not bare JSON valid against `schema`, if it is not.
fn json_problem(text: &str, schema: &Value) -> Option<String> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) if text.trim() == text => v,
        _ => return Some(format!("not bare JSON: {text:?}")),
    };
    let validator = jsonschema::validator_for(schema).expect("test schema compiles");
    validator
        .validate(&value)
        .err()
        .map(|e| format!("{text} does not validate against {schema}: {e}"))
}

#[test]
fn the_documented_examples_complete_at_their_documented_budgets() {
    let entities = json!({"type": "object", "properties": {"entities": {"type": "array"}}});
    let name =
        json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}});
    let answer = json!({"type": "object", "properties": {"answer": {"type": "boolean"}},
                        "required": ["answer"], "additionalProperties": false});
    let cases = [
        req(
            "Extract the named entities from: Alice met Bob in Paris last week.\nJSON:",
            512,
            Constraint::Json(entities.clone()),
        ),
        req("Tell me about yourself as JSON:", 64, Constraint::Json(name.clone())),
        req("Is the sky blue? Answer as JSON:", 32, Constraint::Json(answer.clone())),
        req("The year the war ended was", 8, Constraint::Regex("[0-9]{4}".into())),
        req("Is Paris in France? Answer:", 4, Constraint::Choice(vec!["yes".into(), "no".into()])),
    ];
    let mut bad = Vec::new();
    for (case, got) in cases.iter().zip(run(&cases)) {
        let text = match got {
            Ok(g) if g.tokens <= case.max_tokens => g.text,
            other => {
                bad.push(format!("{:?} at {}: {other:?}", case.prompt, case.max_tokens));
                continue;
            }
        };
        let problem = match case.constraint.as_ref().unwrap() {
            Constraint::Json(schema) => json_problem(&text, schema),
            Constraint::Regex(re) => {
                let full = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
                (!full.is_match(&text)).then(|| text.clone())
            }
            Constraint::Choice(cs) => (!cs.contains(&text)).then(|| text.clone()),
        };
        if let Some(problem) = problem {
            bad.push(format!("{:?}: {problem}", case.prompt));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn generated_schemas_complete_whenever_their_shortest_instance_fits() {
    let generated = schemas::generate(2026, 12);
    const BUDGETS: [u32; 8] = [16, 24, 32, 48, 64, 128, 256, 512];
    let mut cases = Vec::new();
    for (n, g) in generated.iter().enumerate() {
        assert!(json_problem(&g.shortest, &g.schema).is_none(), "oracle: {}", g.shortest);
        let shortest = g.shortest.len() as u32;
        // the tightest budget the guarantee covers (but at least 16), and one from the ladder
        for budget in [shortest.max(16), BUDGETS[n % BUDGETS.len()]] {
            cases.push((
                n,
                budget,
                req("Data as JSON:", budget, Constraint::Json(g.schema.clone())),
            ));
        }
    }
    let reqs: Vec<GenerateRequest> = cases.iter().map(|(_, _, r)| r.clone()).collect();
    let mut bad = Vec::new();
    let mut completed = 0;
    for ((n, budget, _), got) in cases.iter().zip(run(&reqs)) {
        let g = &generated[*n];
        match got {
            Ok(gen) => match json_problem(&gen.text, &g.schema) {
                None if gen.tokens <= *budget => completed += 1,
                None => bad.push(format!("schema {n} at {budget}: {} tokens", gen.tokens)),
                Some(problem) => bad.push(format!("schema {n} at {budget}: {problem}")),
            },
            Err(CoreError::ConstraintUnfinished { .. }) if g.shortest.len() as u32 > *budget => {}
            Err(e) => bad.push(format!(
                "schema {n} ({}) at {budget}, shortest instance {} bytes: {e}",
                g.schema,
                g.shortest.len()
            )),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(completed >= cases.len() - 2, "{completed} of {} completed", cases.len());
}

#[test]
fn regexes_and_choices_complete_at_small_budgets() {
    let cases = [
        req("Licence plate:", 7, Constraint::Regex("[a-z]{3}-[0-9]{3}".into())),
        req("My favourite pet:", 3, Constraint::Regex("(cat|dog|bird)s?".into())),
        req("Phone number:", 8, Constraint::Regex(r"\d{3}-\d{4}".into())),
        req("Hex colour code:", 7, Constraint::Regex("#[0-9a-f]{6}".into())),
        req(
            "Pick a Greek letter:",
            4,
            Constraint::Choice(vec!["alpha".into(), "beta".into(), "gamma".into()]),
        ),
        req("Do you agree?", 2, Constraint::Choice(vec!["yes, definitely".into(), "no".into()])),
    ];
    let mut bad = Vec::new();
    for (case, got) in cases.iter().zip(run(&cases)) {
        let full = match case.constraint.as_ref().unwrap() {
            Constraint::Regex(re) => format!("^(?:{re})$"),
            Constraint::Choice(cs) => format!(
                "^(?:{})$",
                cs.iter().map(|c| regex::escape(c)).collect::<Vec<_>>().join("|")
            ),
            Constraint::Json(_) => unreachable!(),
        };
        match got {
            Ok(g) if regex::Regex::new(&full).unwrap().is_match(&g.text) => {}
            other => bad.push(format!("{:?} at {}: {other:?}", case.constraint, case.max_tokens)),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn outputs_that_end_well_before_the_budget_do_not_depend_on_it() {
    let cases = [
        (
            "A person as JSON:",
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                   "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                   "required": ["name", "age"], "additionalProperties": false}),
        ),
        (
            "Is the sky blue? Answer as JSON:",
            json!({"type": "object", "properties": {"answer": {"type": "boolean"}},
                   "required": ["answer"], "additionalProperties": false}),
        ),
    ];
    for (prompt, schema) in cases {
        let small =
            run(&[req(prompt, 32, Constraint::Json(schema.clone()))]).pop().unwrap().unwrap();
        assert!(small.tokens <= 16, "{prompt:?} needed {} tokens", small.tokens);
        let large = run(&[req(prompt, 512, Constraint::Json(schema))]).pop().unwrap().unwrap();
        assert_eq!(small, large, "{prompt:?}");
    }
}
