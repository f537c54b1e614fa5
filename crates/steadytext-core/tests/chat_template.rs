//! Chat messages rendered with a model's chat template: the packaged Gemma model (whose GGUF
//! carries no `tokenizer.chat_template`) gets its family's turn format, whose markers are
//! decoded as control tokens; a model of an unknown family without a template is refused.

use steadytext_core::{ChatMessage, CoreError, GenerateRequest, Generator};

fn gemma() -> Generator {
    steadytext_testkit::gemma::load(2)
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: content.into() }
}

#[test]
fn gemma_gets_its_turn_format_with_the_system_message_in_the_first_user_turn() {
    let g = gemma();
    let messages = [
        message("system", "Be brief."),
        message("user", "Hi"),
        message("assistant", "Hello!"),
        message("user", "Capital of France?"),
    ];
    let prompt = g.chat_prompt(&messages).unwrap();
    assert_eq!(
        prompt,
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(g.chat_prompt(&messages).unwrap(), prompt, "the same messages, the same bytes");

    // the turn markers are single control tokens only when the prompt is read as a chat
    let req = |special_tokens| GenerateRequest {
        prompt: prompt.clone(),
        max_tokens: 8,
        seed: 42,
        constraint: None,
        special_tokens,
    };
    let (chat, literal) =
        (g.count_prompt_tokens(&prompt, true), g.count_prompt_tokens(&prompt, false));
    assert!(chat + 5 * 4 <= literal, "{chat} tokens as a chat, {literal} as literal text");
    let generation = g.generate_batch(&[req(true)]).unwrap().pop().unwrap().unwrap();
    assert_eq!(generation.prompt_tokens, chat, "a generation reports its prompt tokens");
}

#[test]
fn a_model_of_an_unknown_family_without_a_template_is_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen3.gguf");
    steadytext_testkit::tiny_qwen3_reranker::write(
        &path,
        "tiny",
        3,
        steadytext_testkit::tiny_qwen3_reranker::Head::Logits,
    )
    .unwrap();
    let g = Generator::load(&path, 1).unwrap();
    match g.chat_prompt(&[message("user", "hi")]) {
        Err(e @ CoreError::NoChatTemplate { .. }) => assert_eq!(
            e.to_string(),
            "model tiny-qwen3.gguf cannot format chat messages: it has no \
             tokenizer.chat_template and its family (qwen3) has no known chat template"
        ),
        other => panic!("expected NoChatTemplate, got {other:?}"),
    }
}
