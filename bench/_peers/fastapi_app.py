"""The FastAPI peer: the hello app people write from FastAPI's tutorial, and an
authenticated project route written as FastAPI's documentation recommends.

Run by bench/http_bench.py as ``uvicorn fastapi_app:app`` from this folder, in a venv of its
own. Its routes answer what ours answer on the same paths, with JSON bodies of a similar
size, so the figures compare frameworks rather than payloads.

``GET /api/projects/{project_id}`` (served when ``BENCH_DATABASE`` and ``BENCH_JWT_SECRET``
are set) follows the tutorials "SQL (Relational) Databases" and "OAuth2 with Password
(and hashing), Bearer with JWT tokens": a sync route (FastAPI runs it in its thread
pool), a SQLAlchemy session per request from a dependency, the bearer token decoded
with PyJWT (algorithm pinned, issuer and audience checked) in ``get_current_user``,
which also looks the token's session up to refuse a revoked one; then the caller's
membership, the project row and its number of files. The same SQLite file and rows as
our server.
"""

import os
from datetime import date, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, status

app = FastAPI()


@app.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "alive"}


@app.get("/info")
async def info() -> dict[str, object]:
    return {
        "name": "installsure",
        "version": "0.1.0",
        "environment": "development",
        "build": {},
        "features": {"realTimeSync": True, "fileProcessing": True, "emailNotifications": True},
    }


DATABASE = os.environ.get("BENCH_DATABASE")
SECRET = os.environ.get("BENCH_JWT_SECRET")

if DATABASE and SECRET:
    import jwt
    from fastapi.security import OAuth2PasswordBearer
    from pydantic import BaseModel
    from sqlalchemy import ForeignKey, Numeric, String, create_engine, func, select
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

    engine = create_engine(f"sqlite:///{DATABASE}", connect_args={"check_same_thread": False})
    SessionLocal = sessionmaker(autocommit=False, autoflush=False, bind=engine)

    class Base(DeclarativeBase):
        pass

    class SessionRow(Base):
        __tablename__ = "sessions"
        id: Mapped[str] = mapped_column(String(36), primary_key=True)
        user_id: Mapped[str] = mapped_column(String(36))
        revoked_at: Mapped[datetime | None]

    class ProjectRow(Base):
        __tablename__ = "projects"
        id: Mapped[str] = mapped_column(String(36), primary_key=True)
        name: Mapped[str]
        description: Mapped[str | None]
        status: Mapped[str]
        progress: Mapped[int]
        budget: Mapped[float | None] = mapped_column(Numeric(14, 2, asdecimal=False))
        start_date: Mapped[date | None]
        end_date: Mapped[date | None]
        contractor: Mapped[str | None]
        location: Mapped[str | None]
        created_by: Mapped[str | None]
        created_at: Mapped[datetime]
        updated_at: Mapped[datetime]

    class MemberRow(Base):
        __tablename__ = "project_members"
        project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
        user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
        role: Mapped[str]

    class FileRow(Base):
        __tablename__ = "files"
        id: Mapped[str] = mapped_column(String(36), primary_key=True)
        project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"))

    class User(BaseModel):
        id: str
        role: str

    class Project(BaseModel):
        id: str
        name: str
        description: str | None
        status: str
        progress: int
        budget: float | None
        # camelCase, as on the wire
        startDate: date | None
        endDate: date | None
        contractor: str | None
        location: str | None
        createdBy: str | None
        createdAt: datetime
        updatedAt: datetime
        fileCount: int

    class ProjectEnvelope(BaseModel):
        success: bool
        data: Project

    oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/login")

    def get_db():  # as in the tutorial: a session per request, always closed
        db = SessionLocal()
        try:
            yield db
        finally:
            db.close()

    def get_current_user(
        token: Annotated[str, Depends(oauth2_scheme)], db: Annotated[Session, Depends(get_db)]
    ) -> User:
        unauthorized = HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED, detail="Invalid or expired token",
            headers={"WWW-Authenticate": "Bearer"},
        )
        try:
            payload = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="installsure",
                                 audience="installsure-api",
                                 options={"require": ["exp", "iat", "sub", "sid", "jti"]})
        except jwt.PyJWTError:
            raise unauthorized from None
        session = db.get(SessionRow, payload["sid"])
        if session is None or session.revoked_at is not None:
            raise unauthorized
        return User(id=payload["sub"], role=payload["role"])

    @app.get("/api/projects/{project_id}", response_model=ProjectEnvelope)
    def read_project(
        project_id: str,
        user: Annotated[User, Depends(get_current_user)],
        db: Annotated[Session, Depends(get_db)],
    ) -> ProjectEnvelope:
        not_found = HTTPException(status_code=404, detail="No such project.")
        if user.role not in ("admin", "manager"):
            member = db.get(MemberRow, (project_id, user.id))
            if member is None:
                raise not_found
        project = db.get(ProjectRow, project_id)
        if project is None:
            raise not_found
        file_count = db.scalar(
            select(func.count()).select_from(FileRow).where(FileRow.project_id == project_id)
        )
        return ProjectEnvelope(success=True, data=Project(
            id=project.id, name=project.name, description=project.description,
            status=project.status, progress=project.progress, budget=project.budget,
            startDate=project.start_date, endDate=project.end_date,
            contractor=project.contractor, location=project.location,
            createdBy=project.created_by, createdAt=project.created_at,
            updatedAt=project.updated_at, fileCount=file_count or 0,
        ))
