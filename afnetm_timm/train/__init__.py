"""Training, evaluation and the paper's subject-independent protocol for AFNet-M.

`load_expression_data` reads a preprocessing cache, `subject_folds` splits it by subject,
`train_model` trains (resumable, data resident on the device), `evaluate` tests, and
`run_protocol` runs the whole cross-validation. ``afnetm train|evaluate|protocol|predict|explain``
are the command-line front ends.
"""
from .augment import AugmentConfig
from .datasets import ExpressionData, load_expression_data
from .protocol import ProtocolConfig, run_protocol, select_subjects, subject_folds
from .trainer import EvalResult, TrainConfig, TrainResult, evaluate, train_model

__all__ = [
    "AugmentConfig",
    "EvalResult",
    "ExpressionData",
    "ProtocolConfig",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_expression_data",
    "run_protocol",
    "select_subjects",
    "subject_folds",
    "train_model",
]
