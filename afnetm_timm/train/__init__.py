"""Training, evaluation and the subject-independent protocol for AFNet-M."""
