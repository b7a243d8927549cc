-- The lead list's quadrant filter and quadrant view: the best of one quadrant without
-- reading the others (at 1,000,000 contacts a rare quadrant took a second unindexed).
CREATE INDEX scores_by_quadrant ON scores (model, quadrant, total DESC, contact_id);
