"""Snakemake adapter: the original study's prepared archive (gdown), unpacked safely and validated."""
from mmgenrec import logs
from mmgenrec.data.archive import fetch_prepared_archive

logs.setup(snakemake.log[0])
fetch_prepared_archive(snakemake.output.folder, gdrive_id=snakemake.params.gdrive_id, url=snakemake.params.url,
                       name=snakemake.params.name)
