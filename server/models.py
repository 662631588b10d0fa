"""Every table, imported in one place for Alembic and the CLI."""
from server.areas.models import Area  # noqa: F401
from server.assets.models import Asset, AssetLayer  # noqa: F401
from server.auth.models import ApiToken  # noqa: F401
from server.catalogue.models import Category  # noqa: F401
from server.db import Base  # noqa: F401
from server.dispatch.models import Contractor, Crew  # noqa: F401
from server.inbound.models import ImportRun, InboundUpdate, WorkerHeartbeat  # noqa: F401
from server.jobs.models import Job, JobEvent  # noqa: F401
from server.outbox.models import OutboxMessage, Subscription  # noqa: F401
from server.reports.models import Photo, Report  # noqa: F401
from server.notifications.models import Chaser, ContactAccess, Notification, ReporterContact  # noqa: F401
from server.planning.models import DayPlan, PlanRoute, PlanStop, PlanUnassigned, RoadEdge, RoadNode  # noqa: F401
