"""asset layers keep their extent: written by whoever loads assets, read by OGC API Features

Revision ID: 0012_layer_extents
Revises: 0011_intake_contact
Create Date: 2026-12-07 01:30:00

Each OGC worker used to compute every asset layer's extent (ST_Extent over all of its assets) on its first
request and every five minutes after: 14 s at 10M lamp columns, a stall each time. The extent now lives on
asset_layers (storage CRS, null for an empty layer), kept by kerbside_layer_extent(layer id), which the GIS
import, the synthetic scale loader and the benchmarks' loader call after writing a layer's assets. This
upgrade fills it in for the layers there are. (Numbered 0012 beside another branch's 0011, both on 0010:
whoever merges second chains one after the other.)
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_layer_extents'
down_revision = '0011_intake_contact'
branch_labels = None
depends_on = None

COLUMNS = ('extent_xmin', 'extent_ymin', 'extent_xmax', 'extent_ymax')

LAYER_EXTENT = r"""
CREATE OR REPLACE FUNCTION kerbside_layer_extent(p_layer integer) RETURNS void
LANGUAGE sql AS $$
    UPDATE asset_layers l
       SET extent_xmin = ST_XMin(e.box), extent_ymin = ST_YMin(e.box),
           extent_xmax = ST_XMax(e.box), extent_ymax = ST_YMax(e.box)
      FROM (SELECT ST_Extent(geom) AS box FROM assets WHERE layer_id = p_layer) e
     WHERE l.id = p_layer;
$$;
COMMENT ON FUNCTION kerbside_layer_extent(integer) IS
    'Store the extent of a layer''s assets on asset_layers (call it after writing the layer''s assets)';
"""


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column('asset_layers', sa.Column(name, sa.Float(), nullable=True))
    op.execute(LAYER_EXTENT)
    op.execute("SELECT kerbside_layer_extent(id) FROM asset_layers")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS kerbside_layer_extent(integer)")
    for name in COLUMNS:
        op.drop_column('asset_layers', name)
