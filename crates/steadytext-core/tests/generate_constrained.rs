//! Constrained generation (JSON schema, regex, choice) on the packaged Gemma model: outputs
//! satisfy their constraints, bad constraints are typed errors, and batching changes no byte.

use serde_json::{json, Value};
use steadytext_core::{Constraint, CoreError, GenerateRequest, Generator};

/// One generator shared by the tests of this file (they run on parallel threads).
fn generator() -> &'static Generator {
    steadytext_testkit::gemma::shared()
}

fn req(prompt: &str, max_tokens: u32, constraint: Option<Constraint>) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        max_tokens,
        seed: 42,
        constraint,
        special_tokens: false,
    }
}

fn choice(choices: &[&str]) -> Constraint {
    Constraint::Choice(choices.iter().map(|c| c.to_string()).collect())
}

/// Runs the requests as one batch and returns each request's result.
fn run(reqs: &[GenerateRequest]) -> Vec<Result<String, CoreError>> {
    generator().generate_batch(reqs).unwrap().into_iter().map(|r| r.map(|g| g.text)).collect()
}

#[test]
fn json_outputs_are_bare_json_valid_against_their_schemas() {
    let person = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120}
        },
        "required": ["name", "age"],
        "additionalProperties": false
    });
    let cases: Vec<(&str, Value)> = vec![
        ("A person as JSON:", person),
        (
            "Three colors:",
            json!({"type": "array", "items": {"enum": ["red", "green", "blue", "black"]},
                   "minItems": 2, "maxItems": 3}),
        ),
        (
            "Some small numbers:",
            json!({"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9},
                   "minItems": 2, "maxItems": 4}),
        ),
        ("Pick a color:", json!({"enum": ["red", "green", "blue"]})),
        ("Temperature in Celsius:", json!({"type": "integer", "minimum": -10, "maximum": 40})),
        (
            // Few-shot: a base model left alone keeps appending zeros to a decimal number.
            "{\"price\":12.5}\n{\"price\":3.99}\n",
            json!({"type": "object",
                   "properties": {"price": {"type": "number", "minimum": 0, "maximum": 1000}},
                   "required": ["price"], "additionalProperties": false}),
        ),
        (
            "A point on a 10x10 grid as JSON:",
            json!({"type": "object",
                   "properties": {"point": {"type": "object",
                       "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9},
                                      "y": {"type": "integer", "minimum": 0, "maximum": 9}},
                       "required": ["x", "y"], "additionalProperties": false}},
                   "required": ["point"], "additionalProperties": false}),
        ),
        ("US zip code:", json!({"type": "string", "pattern": "^[0-9]{5}$"})),
        ("Is the sky blue? true or false:", json!({"type": "boolean"})),
    ];
    let reqs: Vec<GenerateRequest> =
        cases.iter().map(|(p, s)| req(p, 24, Some(Constraint::Json(s.clone())))).collect();
    let mut bad = Vec::new();
    for ((prompt, schema), got) in cases.iter().zip(run(&reqs)) {
        let text = match got {
            Ok(text) => text,
            Err(e) => {
                bad.push(format!("{prompt:?}: {e}"));
                continue;
            }
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) if text.trim() == text => v,
            _ => {
                bad.push(format!("{prompt:?}: not bare JSON: {text:?}"));
                continue;
            }
        };
        let validator = jsonschema::validator_for(schema).expect("test schema compiles");
        if let Err(e) = validator.validate(&value) {
            bad.push(format!("{prompt:?}: {text} does not validate against {schema}: {e}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn regex_outputs_fully_match_their_patterns() {
    let cases = [
        ("Phone number:", r"\d{3}-\d{4}"),
        ("Date of the moon landing:", r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
        ("A capitalised name:", r"[A-Z][a-z]{2,8}"),
        ("My favourite pet:", r"(cat|dog|bird)s?"),
        ("Anchored answer:", r"^(yes|no)$"),
        ("Hex colour code:", r"#[0-9a-f]{6}"),
    ];
    let reqs: Vec<GenerateRequest> =
        cases.iter().map(|(p, re)| req(p, 16, Some(Constraint::Regex(re.to_string())))).collect();
    let mut bad = Vec::new();
    for ((prompt, pattern), got) in cases.iter().zip(run(&reqs)) {
        let full = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
        match got {
            Ok(text) if full.is_match(&text) => {}
            other => bad.push(format!("{prompt:?} /{pattern}/: {other:?}")),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn choice_outputs_are_exactly_one_of_the_choices() {
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("Is the sky blue? Answer:", vec!["yes", "no"]),
        ("Review: 'I loved it!' Sentiment:", vec!["positive", "negative", "neutral"]),
        ("The best language:", vec!["C++", "C#", "a.b (x|y)*"]),
        ("Do you agree?", vec!["yes", "yes, definitely", "no"]),
    ];
    let reqs: Vec<GenerateRequest> =
        cases.iter().map(|(p, cs)| req(p, 16, Some(choice(cs)))).collect();
    let mut bad = Vec::new();
    for ((prompt, choices), got) in cases.iter().zip(run(&reqs)) {
        match got {
            Ok(text) if choices.contains(&text.as_str()) => {}
            other => bad.push(format!("{prompt:?} {choices:?}: {other:?}")),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn invalid_constraints_are_typed_errors_and_fail_only_their_request() {
    let invalid: Vec<(Constraint, &str)> = vec![
        (Constraint::Json(json!({"type": "foo"})), "schema"),
        (Constraint::Json(json!([1, 2])), "schema"),
        (Constraint::Json(json!(false)), "schema"),
        (Constraint::Json(json!({"type": "integer", "minimum": 5, "maximum": 1})), "schema"),
        (Constraint::Regex("(ab".into()), "regex"),
        (Constraint::Regex(String::new()), "regex"),
        (Constraint::Regex(r"\bword".into()), "regex"),
        (choice(&[]), "choices"),
        (choice(&["a", ""]), "choices"),
        (choice(&["a", "b", "a"]), "choices"),
    ];
    // Every invalid request sits in one batch with a valid one, which must still succeed.
    let mut reqs: Vec<GenerateRequest> =
        invalid.iter().map(|(c, _)| req("Answer:", 4, Some(c.clone()))).collect();
    let valid = req("Is the sky blue? Answer:", 4, Some(choice(&["yes", "no"])));
    reqs.push(valid.clone());
    let mut got = run(&reqs);
    let last = got.pop().unwrap().expect("the valid request succeeds");
    assert_eq!(last, generator().generate(&valid).unwrap());
    for ((constraint, expected), result) in invalid.iter().zip(got) {
        match result {
            Err(e) if kind(&e) == *expected => {}
            other => panic!("{constraint:?}: expected a typed error, got {other:?}"),
        }
    }
}

/// The constraint kind a validation error is about.
fn kind(e: &CoreError) -> &'static str {
    match e {
        CoreError::InvalidSchema(_) => "schema",
        CoreError::InvalidRegex(_) => "regex",
        CoreError::InvalidChoices(_) => "choices",
        _ => "not a validation error",
    }
}

#[test]
fn max_tokens_before_the_constraint_is_satisfied_is_a_typed_error() {
    // Gemma writes one digit per token, so 12 digits cannot fit in 5 tokens.
    let got = run(&[req("Card number:", 5, Some(Constraint::Regex("[0-9]{12}".into())))]);
    match &got[0] {
        Err(CoreError::ConstraintUnfinished { max_tokens: 5 }) => {}
        other => panic!("expected ConstraintUnfinished, got {other:?}"),
    }
}

#[test]
fn a_constrained_request_gives_the_same_bytes_alone_and_in_batches_of_4() {
    let target = req(
        "A person as JSON:",
        24,
        Some(Constraint::Json(json!({
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 12},
                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"], "additionalProperties": false
        }))),
    );
    let neighbours = [
        req("The capital of France is", 12, None),
        req("Phone number:", 10, Some(Constraint::Regex(r"\d{3}-\d{4}".into()))),
        req("Is the sky blue? Answer:", 4, Some(choice(&["yes", "no"]))),
        req(&"A long prompt that repeats itself. ".repeat(20), 8, None),
        req("Temperature:", 6, Some(Constraint::Json(json!({"type": "integer"})))),
    ];
    let alone = generator().generate(&target).unwrap();
    let neighbours_alone: Vec<Result<String, CoreError>> =
        neighbours.iter().map(|r| generator().generate(r)).collect();
    let batches: [[usize; 3]; 3] = [[0, 1, 2], [3, 4, 1], [2, 0, 3]];
    for (b, batch) in batches.iter().enumerate() {
        // The target's index differs per batch: 0, 1, 2.
        let mut reqs: Vec<GenerateRequest> = batch.iter().map(|&i| neighbours[i].clone()).collect();
        reqs.insert(b, target.clone());
        let got = run(&reqs);
        assert_eq!(got[b].as_ref().unwrap(), &alone, "target in batch {b}");
        let others = got.iter().enumerate().filter(|(i, _)| *i != b).map(|(_, r)| r);
        for (&i, out) in batch.iter().zip(others) {
            assert_eq!(
                format!("{out:?}"),
                format!("{:?}", neighbours_alone[i]),
                "neighbour {i} in batch {b}"
            );
        }
    }
}
