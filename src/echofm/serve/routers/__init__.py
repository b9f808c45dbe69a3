"""One router per resource: ``api`` (studies as JSON, uploads), ``pages`` (HTML),
``files`` (a study's output files), ``auth`` (the login form, the one open route)."""
