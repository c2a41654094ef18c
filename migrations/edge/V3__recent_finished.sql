-- The listing shows surplus finished (or picked up) within the recent
-- window; after a restart they are reloaded through this index.
CREATE INDEX surplus_finished ON surplus (updated_at)
    WHERE status IN ('delivered', 'expired', 'picked_up');
