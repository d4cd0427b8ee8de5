"""Scoring trained models and showing the comparison.

- `metrics`: test scores, the validation curve's shape and weight statistics per model.
- `report`: plot data, figures and the markdown report of all models.
"""
