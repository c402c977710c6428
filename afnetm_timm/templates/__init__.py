"""Package data: the model card template (``model_card.md``) that ``afnetm hub export`` fills in."""
