"""Model backends behind one `ChatModel` protocol: llama.cpp in process, OpenAI-style HTTP,
and a scripted double for tests. Import from here, not from the modules."""

from agents.llm.base import (
    ChatModel,
    Completion,
    Message,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    Role,
    Usage,
)
from agents.llm.factory import make_model
from agents.llm.llamacpp import LlamaCppModel, check_gguf, embedded_model_path
from agents.llm.openai_http import JsonMode, OpenAIHttpModel, chat_completions_url
from agents.llm.scripted import ScriptedModel
from agents.llm.supervised import SupervisedModel, WorkerInfo, describe_exit

__all__ = [
    "ChatModel",
    "Completion",
    "JsonMode",
    "LlamaCppModel",
    "Message",
    "ModelError",
    "ModelTimeout",
    "ModelUnavailable",
    "OpenAIHttpModel",
    "Role",
    "ScriptedModel",
    "SupervisedModel",
    "Usage",
    "WorkerInfo",
    "chat_completions_url",
    "check_gguf",
    "describe_exit",
    "embedded_model_path",
    "make_model",
]
