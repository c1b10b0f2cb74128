"""After the search: the leading configs confirmed by cross-validation (:mod:`.confirm`), ranked
(:mod:`.ranking`), and retrained into the final model (:mod:`.retrain`), each training a Ray task
(:mod:`.tasks`)."""
