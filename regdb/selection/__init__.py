"""Choosing images: ``selectors`` (repositories, tags, version comparisons, regexes, exclusions compiled to
SQL over the inventory) and ``retention`` (keep-latest, age and use rules). Nothing here changes a registry."""
