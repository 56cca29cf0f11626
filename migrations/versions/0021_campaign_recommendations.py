"""The products a campaign run recommended to each person (or would have, in the
holdout), for the report.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('campaign_recommendations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('holdout', sa.Boolean(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_recommendations_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_campaign_recommendations_customer_id_customers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_recommendations'))
    )
    with op.batch_alter_table('campaign_recommendations', schema=None) as batch_op:
        batch_op.create_index('ix_campaign_recommendations_campaign', ['campaign_id', 'customer_id'], unique=False)


def downgrade():
    with op.batch_alter_table('campaign_recommendations', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_recommendations_campaign')

    op.drop_table('campaign_recommendations')
