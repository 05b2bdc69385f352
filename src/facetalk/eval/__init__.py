"""Measures of a generated talking-head video against real footage (`facetalk eval`)."""
