"""Files shipped with the package: the demo recording and its licence notice."""
