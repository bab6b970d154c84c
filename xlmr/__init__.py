"""xlmr: the XLM-RoBERTa encoder, its token-classification head, tokenizer and checkpoints."""
from .config import XLMRConfig
from .model import XLMRForTokenClassification, XLMRModel

__all__ = ["XLMRConfig", "XLMRForTokenClassification", "XLMRModel"]
