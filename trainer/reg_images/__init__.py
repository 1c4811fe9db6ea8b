"""`python -m trainer reg-generate`: class (regularization) images drawn with the base model."""
