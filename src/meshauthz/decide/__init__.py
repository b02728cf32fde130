"""decide: a Request through the built filters, in istiod's order, to a Decision."""
