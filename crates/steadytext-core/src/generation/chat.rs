//! Chat messages rendered into one prompt with the generation model's chat template: the
//! template in its GGUF metadata (`tokenizer.chat_template`) when llama.cpp's template engine
//! recognises it, else the known template of the model's family (`general.architecture`), else
//! an error naming both reasons.
//!
//! llama.cpp does not run Jinja: it recognises a template by its markers (e.g. Gemma's
//! `<start_of_turn>`) and renders the family's format in C++, so a rendering depends only on the
//! messages and the chosen template — the same messages always give the same prompt bytes.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use crate::CoreError;

/// The GGUF metadata key of a model's chat template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// Model families (GGUF `general.architecture`) whose chat format is known when a model file
/// carries no usable template, with the name of llama.cpp's built-in template for it.
const FAMILY_TEMPLATES: [(&str, &str); 4] =
    [("gemma", "gemma"), ("gemma2", "gemma"), ("gemma3", "gemma"), ("gemma3n", "gemma")];

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

/// Where a model's chat template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// The model file's own `tokenizer.chat_template`.
    Model,
    /// The built-in template of the model's family (named as llama.cpp names it).
    Family(&'static str),
}

/// The chosen template of a model: its text (or llama.cpp's name of a built-in one) and where
/// it came from.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    template: LlamaChatTemplate,
    /// Where the template came from.
    pub source: TemplateSource,
}

/// Chooses a model's chat template: its own (`model_template`, when `recognised` says
/// llama.cpp's template engine can render it), else its family's built-in one by
/// `architecture`; `Err` says why neither is available.
pub fn select_template(
    model_template: Option<&str>,
    architecture: Option<&str>,
    recognised: impl Fn(&str) -> bool,
) -> Result<(String, TemplateSource), String> {
    let own = match model_template {
        Some(t) if recognised(t) => return Ok((t.to_owned(), TemplateSource::Model)),
        Some(_) => format!("its {TEMPLATE_KEY} is not a template llama.cpp can render"),
        None => format!("it has no {TEMPLATE_KEY}"),
    };
    let family = architecture.and_then(|a| FAMILY_TEMPLATES.iter().find(|(f, _)| *f == a));
    match family {
        Some((_, name)) => Ok(((*name).to_owned(), TemplateSource::Family(name))),
        None => Err(format!(
            "{own} and its family ({}) has no known chat template",
            architecture.unwrap_or("unknown architecture")
        )),
    }
}

impl ChatTemplate {
    /// The chat template of `model` (see [`select_template`]); `name` names the model in the
    /// error.
    pub(crate) fn of(model: &LlamaModel, name: &str) -> Result<Self, CoreError> {
        let no_template =
            |reason: String| CoreError::NoChatTemplate { model: name.to_owned(), reason };
        let own = model.chat_template(None).ok().and_then(|t| t.to_string().ok());
        let architecture = model.meta_val_str("general.architecture").ok();
        let (text, source) = select_template(own.as_deref(), architecture.as_deref(), |t| {
            LlamaChatTemplate::new(t).is_ok_and(|t| render(model, &t, &probe()).is_ok())
        })
        .map_err(no_template)?;
        let template = LlamaChatTemplate::new(&text).map_err(|e| no_template(e.to_string()))?;
        Ok(Self { template, source })
    }

    /// The prompt of `messages`, ending with the opening of the assistant's turn.
    pub(crate) fn apply(
        &self,
        model: &LlamaModel,
        messages: &[ChatMessage],
    ) -> Result<String, CoreError> {
        let chat = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                LlamaChatMessage::new(m.role.clone(), m.content.clone()).map_err(|_| {
                    CoreError::ChatMessage(format!("message {i} contains a NUL character"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        render(model, &self.template, &chat)
            .map_err(|e| CoreError::ChatMessage(format!("the chat template failed: {e}")))
    }
}

/// One user message, to check that llama.cpp renders a template.
fn probe() -> Vec<LlamaChatMessage> {
    vec![LlamaChatMessage::new("user".into(), "hi".into()).expect("no NUL")]
}

fn render(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    chat: &[LlamaChatMessage],
) -> Result<String, llama_cpp_2::ApplyChatTemplateError> {
    model.apply_chat_template(template, chat, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEMMA_JINJA: &str = "{% for m in messages %}<start_of_turn>{{ m.role }}…";

    #[test]
    fn the_models_own_template_wins_when_llama_cpp_renders_it() {
        let chosen = select_template(Some(GEMMA_JINJA), Some("qwen3"), |_| true);
        assert_eq!(chosen, Ok((GEMMA_JINJA.to_owned(), TemplateSource::Model)));
    }

    #[test]
    fn the_family_template_stands_in_for_a_missing_or_unrenderable_one() {
        for own in [None, Some("{{ something llama.cpp does not know }}")] {
            let chosen = select_template(own, Some("gemma3"), |t| t == GEMMA_JINJA);
            assert_eq!(chosen, Ok(("gemma".to_owned(), TemplateSource::Family("gemma"))));
        }
    }

    #[test]
    fn without_either_the_reason_names_the_template_and_the_family() {
        assert_eq!(
            select_template(None, Some("qwen3"), |_| true),
            Err("it has no tokenizer.chat_template and its family (qwen3) has no known chat \
                 template"
                .to_owned())
        );
        assert_eq!(
            select_template(Some("x"), None, |_| false),
            Err("its tokenizer.chat_template is not a template llama.cpp can render and its \
                 family (unknown architecture) has no known chat template"
                .to_owned())
        );
    }
}
