"""An example ideochar provider plugin (a template: copy it for a real vendor)."""
