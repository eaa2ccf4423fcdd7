"""Snakemake adapter: one verified image per reviewed item (a rerun fetches only what is missing)."""
from mmgenrec import logs
from mmgenrec.data.sources import fetch_category_images

logs.setup(snakemake.log[0], snakemake.threads)
fetch_category_images(snakemake.input.meta, snakemake.input.reviews, snakemake.params.image_dir,
                      snakemake.output.done, max_workers=snakemake.threads, **snakemake.params.cfg)
