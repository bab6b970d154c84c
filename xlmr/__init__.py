"""xlmr: the XLM-RoBERTa encoder, its token-classification head, tokenizer and checkpoints."""
from .config import TAGS, XLMRConfig
from .model import XLMRForTokenClassification, XLMRModel

__all__ = ["TAGS", "XLMRConfig", "XLMRForTokenClassification", "XLMRModel"]
