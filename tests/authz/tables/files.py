"""Files (installsure.api.files): what their project allows.

A file of a project is seen by whoever may see the project; uploading into a project
needs the right to edit it; deleting a file needs DELETE_FILE there (editors, owners,
managers, admins). The operator uploads and deletes as an admin (its files have no
uploader).
"""

import uuid

from sqlalchemy import Connection, insert

from installsure.db.tables import files
from installsure.files.keys import storage_key
from tests.authz.matrix import Entry, Situation, by_role, project_statuses, statuses
from tests.files.helpers import CONTENT_TYPE, PNG, multipart

READ = project_statuses(
    own=by_role(viewer=200, member=200, manager=200, admin=200),
    other=by_role(viewer=404, member=404, manager=200, admin=200),
)
#: Visible or not, there is no thumbnail before processing made one.
THUMBNAIL = project_statuses(
    own=by_role(viewer=404, member=404, manager=404, admin=404),
    other=by_role(viewer=404, member=404, manager=404, admin=404),
)
UPLOAD = project_statuses(
    own=by_role(viewer=403, member=201, manager=201, admin=201),
    other=by_role(viewer=404, member=404, manager=201, admin=201),
)
DELETE = project_statuses(
    own=by_role(viewer=403, member=200, manager=200, admin=200),
    other=by_role(viewer=404, member=404, manager=200, admin=200),
)


def _stored_file(c: Connection, s: Situation) -> dict[str, object]:
    """A file of the situation's project, its bytes in the storage (for ``none``: a
    file id that does not exist)."""
    file_id = str(uuid.uuid4())
    if s.name == "none":
        return {"file_id": file_id}
    key = storage_key(file_id)
    c.execute(insert(files).values(
        id=file_id, project_id=s.project_id, storage_key=key, original_name="plan.png",
        mime_type="image/png", extension="png", size=len(PNG), sha256="0" * 64))
    return {"file_id": file_id, "stored": {key: PNG}}


def _file(s: Situation) -> dict[str, str]:
    return {"id": str(s.extras["file_id"])}


def _upload(s: Situation) -> tuple[str, bytes]:
    return CONTENT_TYPE, multipart([("projectId", None, s.project_id.encode()),
                                    ("file", "site photo.png", PNG)])


ENTRIES = [
    Entry("GET", "/api/files", {"-": statuses(200)}),
    Entry("GET", "/api/files/stats", {"-": statuses(200)}),
    Entry("POST", "/api/files/upload", UPLOAD, form=_upload),
    Entry("GET", "/api/files/{id}", READ, params=_file, prepare=_stored_file),
    Entry("GET", "/api/files/{id}/download", READ, params=_file, prepare=_stored_file),
    Entry("GET", "/api/files/{id}/thumbnail", THUMBNAIL, params=_file, prepare=_stored_file),
    Entry("DELETE", "/api/files/{id}", DELETE, params=_file, prepare=_stored_file),
]
