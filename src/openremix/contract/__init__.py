"""Public request/response models and the error tree of the wire contract.

- `params.py`: the constants of CONTRACT.md §3 (sizes, enums, limits) and the model slug;
- `request.py`: `RemixRequest`, `parse_remix_request`, `canonical_body`;
- `palettes.py`: the colour-palette models and presets; `validation.py`: how rules are written
  and reported; `errors.py`: the error tree.
"""
