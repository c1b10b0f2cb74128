"""The run's report: built from the stages' records and written (:mod:`.build`), rendered for people
(:mod:`.markdown`), its plots (:mod:`.plots`) and TensorBoard's final run (:mod:`.final_run`)."""
