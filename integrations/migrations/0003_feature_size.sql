-- The size of the image each catalog photo's keypoints are measured in (the photo downscaled for
-- local features), so that match explanations can draw keypoints on the stored thumbnail exactly.
-- NULL for photos enrolled before this migration (whales_identify/explain.py then estimates it).
ALTER TABLE catalog_images ADD COLUMN feature_width INTEGER;
ALTER TABLE catalog_images ADD COLUMN feature_height INTEGER;
