"""nf2vec through the service: a real ``neural-shapes serve --nf2vec-model DIR`` on the tiny test toolkit
(crude shapes: these tests check mechanics, not quality), driven with the add-on's stdlib client."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, replace

import numpy as np
import pytest
import trimesh

from backend.shapes.shape_file import shape_from_bytes, shape_to_bytes
from blender_addon.client import Client, ServiceError
from tests.nf2vec_toolkit import CLASSES, QUICK_DECODE, build_toolkit
from tests.service_server import ServerProcess
from tests.test_service import authed, raw, status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.service]

SLOW_DECODE = replace(
    QUICK_DECODE, fit=replace(QUICK_DECODE.fit, max_steps=1_000_000, patience=1_000_000)
)  # runs until cancelled


def nf2vec_server(data_dir, model_dir, decode=QUICK_DECODE) -> ServerProcess:
    return ServerProcess(data_dir, "--nf2vec-model", str(model_dir), "--nf2vec-decode", json.dumps(asdict(decode)))


@pytest.fixture(scope="module")
def toolkit(tmp_path_factory):
    root = tmp_path_factory.mktemp("toolkit")
    tools, shapes, _ = build_toolkit(root)
    return tools, shapes, root


@pytest.fixture(scope="module")
def server(toolkit, tmp_path_factory):
    srv = nf2vec_server(tmp_path_factory.mktemp("service") / "data", toolkit[2] / "model")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def library(client, toolkit) -> dict[str, str]:
    """The toolkit's shapes imported into the library: name -> id."""
    return {shape.name: client.import_shape(shape_to_bytes(shape)).id for shape in toolkit[1]}


@pytest.fixture(scope="module")
def foreign(client, toolkit) -> str:
    """A shape of another model family."""
    return client.import_shape(shape_to_bytes(replace(toolkit[1][0], name="foreign", family_id="random-7"))).id


def finished(client: Client, job_id: str):
    seen = []
    job = client.wait(job_id, timeout=120, poll=0.1, on_progress=lambda j: seen.append(j.progress))
    assert job.state == "succeeded", job.error
    assert seen == sorted(seen) and seen[-1] == 1.0
    return job


def check_stored(client: Client, job, names: list[str]) -> None:
    """The job's shapes are in the library with its id, downloadable, and mesh."""
    assert [client.shape(i).name for i in job.shape_ids] == names
    for shape_id in job.shape_ids:
        shape = client.shape(shape_id)
        assert shape.job_id == job.id and shape.provenance["nf2vec_model"]
        assert shape_from_bytes(client.download_shape(shape_id)).name == shape.name
        vertices, faces, _ = client.mesh(shape_id, resolution=32).numpy()
        assert len(faces) > 0 and np.isfinite(vertices).all()


# --- the model -----------------------------------------------------------------------------------


def test_info_names_the_model_its_tasks_and_classes(client, toolkit):
    info = client.nf2vec_info()
    model = toolkit[0].model
    assert (info.model_id, info.family_id, info.embedding_size) == (
        model.model_id,
        model.family_id,
        model.config.embedding_size,
    )
    assert info.tasks == {"generate": True, "classify": True, "complete": True} and info.classes == CLASSES


# --- jobs ----------------------------------------------------------------------------------------


def test_interpolate_in_embedding_space(client, library):
    job = client.start_interpolate(library["sphere"], library["cube"], count=2)
    assert job.kind == "interpolate" and job.inputs["times"] == pytest.approx([1 / 3, 2 / 3])
    job = finished(client, job.id)
    check_stored(client, job, ["sphere-cube-t333", "sphere-cube-t667"])
    assert client.shape(job.shape_ids[0]).metrics["surface_error"] is not None


def test_interpolate_in_weight_space(client, library):
    job = finished(
        client, client.start_interpolate(library["cube"], library["slab"], times=[0.25, 0.5], space="weights").id
    )
    check_stored(client, job, ["cube-slab-t250", "cube-slab-t500"])
    assert client.shape(job.shape_ids[1]).metrics["chamfer"] is None  # not measured: no reference surface


def test_generate(client):
    job = finished(client, client.start_generate(2, seed=3, class_name="round").id)
    check_stored(client, job, ["generated-round-3-0", "generated-round-3-1"])
    assert job.inputs == {"count": 2, "seed": 3, "class": "round", "truncation": None, "decoder": "implicit"}
    job = finished(client, client.start_generate(1).id)
    assert client.shape(job.shape_ids[0]).name == "generated-0-0"


def test_complete_a_library_shape(client, library):
    job = finished(client, client.start_complete(shape_id=library["cone"]).id)
    check_stored(client, job, ["cone-completed"])


def test_complete_an_uploaded_mesh(client):
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    open_ball = ball.faces[ball.triangles_center[:, 2] < 0.2]  # the top cut off: a partial scan
    upload = client.upload_mesh(ball.vertices, open_ball, name="cut ball")
    job = finished(client, client.start_complete(upload_id=upload.id).id)
    check_stored(client, job, ["cut ball-completed"])
    [fitted] = job.outputs["fitted"]
    assert client.shape(fitted).name == "cut ball" and client.shape(fitted).job_id == job.id
    assert status_of(lambda: client.request("GET", f"/v1/uploads/{upload.id}")) == 404  # used up


def test_cancel_a_running_nf2vec_job(toolkit, library, tmp_path):
    slow = nf2vec_server(tmp_path / "slow", toolkit[2] / "model", SLOW_DECODE)
    try:
        client = slow.client
        job = client.start_generate(2)
        deadline = time.monotonic() + 120  # generous: the test machine may be busy
        while "fitting" not in job.stage:
            assert not job.done and time.monotonic() < deadline, job
            time.sleep(0.05)
            job = client.job(job.id)
        client.cancel(job.id)
        job = wait_for(client, job.id, "cancelled", timeout=60)
        assert job.outputs.get("shapes") is None and client.shapes() == []
    finally:
        slow.stop()


# --- fast requests -------------------------------------------------------------------------------


def test_similar_ranks_a_duplicate_first(client, library, foreign, toolkit):
    copy = client.import_shape(client.download_shape(library["ring"]), name="ring again").id
    neighbours = client.similar(library["ring"], k=3)
    assert len(neighbours) == 3 and neighbours[0].id == copy and neighbours[0].name == "ring again"
    assert neighbours[0].distance == pytest.approx(0.0, abs=1e-5)
    distances = [n.distance for n in neighbours]
    assert distances == sorted(distances)
    everything = client.similar(library["ring"], k=100)
    ids = {n.id for n in everything}
    assert library["ring"] not in ids and foreign not in ids and set(library.values()) - {library["ring"]} <= ids
    client.delete_shape(copy)
    assert client.similar(library["ring"], k=1)[0].id != copy


def test_classify_gives_probabilities(client, library):
    classes = client.classify(library["cube"])
    assert {c.class_name for c in classes} == set(CLASSES)
    assert sum(c.probability for c in classes) == pytest.approx(1.0, abs=1e-5)
    assert [c.probability for c in classes] == sorted((c.probability for c in classes), reverse=True)


# --- refusals ------------------------------------------------------------------------------------


def test_validation_errors(server, library):
    headers = authed(server, **{"Content-Type": "application/json"})
    a, b = library["sphere"], library["cube"]

    def post(path: str, body) -> tuple[int, str]:
        status, answer = raw(
            server, "POST", path, headers, body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        return status, answer.get("detail", "")

    cases = [
        ("interpolate", {"a": a, "b": b, "times": [0.5], "count": 2}, "either"),
        ("interpolate", {"a": a, "b": b}, "either"),
        ("interpolate", {"a": a, "b": b, "count": 0}, "count"),
        ("interpolate", {"a": a, "b": b, "count": 33}, "count"),
        ("interpolate", {"a": a, "b": b, "times": []}, "times"),
        ("interpolate", {"a": a, "b": b, "times": [2.5]}, "times"),
        ("interpolate", {"a": a, "b": b, "times": [0.5] * 33}, "times"),
        ("interpolate", {"a": "../../token", "b": b, "count": 1}, "body.a"),
        ("interpolate", {"a": a, "b": b, "count": 1, "space": "pixels"}, "space"),
        ("interpolate", {"a": a, "b": b, "count": 1, "bogus": 1}, "bogus"),
        ("generate", {"count": 33}, "count"),
        ("generate", {"count": 1, "seed": -1}, "seed"),
        ("generate", {"class": "../etc"}, "class"),
        ("generate", {"class": "chairs"}, "cannot make class 'chairs': it makes round, boxy"),
        ("complete", {"shape": a, "upload": a}, "either"),
        ("complete", {}, "either"),
    ]
    for kind, body, words in cases:
        status, detail = post(f"/v1/nf2vec/{kind}", body)
        assert status == 422 and words in detail, (kind, body, status, detail)
    nan = f'{{"a": "{a}", "b": "{b}", "times": [NaN]}}'.encode()
    assert post("/v1/nf2vec/interpolate", nan)[0] == 422
    assert raw(server, "POST", "/v1/nf2vec/generate", authed(server, **{"Content-Type": "text/plain"}), b"{}")[0] == 415
    assert raw(server, "GET", f"/v1/shapes/{a}/similar?k=0", authed(server))[0] == 422


def test_unknown_ids_and_other_families(client, library, foreign):
    unknown = "0123456789abcdef" * 2
    for call in (
        lambda: client.start_interpolate(library["sphere"], unknown, count=1),
        lambda: client.start_complete(shape_id=unknown),
        lambda: client.start_complete(upload_id=unknown),
        lambda: client.similar(unknown),
        lambda: client.classify(unknown),
    ):
        assert status_of(call) == 404
    for call in (
        lambda: client.start_interpolate(foreign, library["sphere"], count=1),
        lambda: client.start_complete(shape_id=foreign),
        lambda: client.similar(foreign),
        lambda: client.classify(foreign),
    ):
        with pytest.raises(ServiceError) as error:
            call()
        assert error.value.status == 422 and "is of model family random-7" in error.value.detail
    assert status_of(lambda: client.similar("ABCDEF" * 6)) == 404  # malformed: matches no route, never near the disk


def test_missing_model_is_a_clear_error_until_it_appears(toolkit, tmp_path):
    folder = tmp_path / "model"
    srv = ServerProcess(tmp_path / "data", "--nf2vec-model", str(folder))
    try:
        client = srv.client
        shape = client.import_shape(shape_to_bytes(toolkit[1][0]))  # everything else works
        assert client.health().status == "ok" and [s.id for s in client.shapes()] == [shape.id]
        for call in (
            client.nf2vec_info,
            lambda: client.start_interpolate(shape.id, shape.id, count=1),
            lambda: client.start_generate(1),
            lambda: client.start_complete(shape_id=shape.id),
            lambda: client.similar(shape.id),
            lambda: client.classify(shape.id),
        ):
            with pytest.raises(ServiceError) as error:
                call()
            assert (
                error.value.status == 503
                and error.value.detail.startswith("no nf2vec model: ")
                and str(folder) in error.value.detail
            )
            assert "\n" not in error.value.detail

        shutil.copytree(
            toolkit[2] / "model", folder, ignore=shutil.ignore_patterns("gan.safetensors")
        )  # trained meanwhile, no GAN
        info = client.nf2vec_info()
        assert info.tasks == {"generate": False, "classify": True, "complete": True} and info.classes == []
        with pytest.raises(ServiceError) as error:
            client.start_generate(1)
        assert (
            error.value.status == 503
            and "generate is not available" in error.value.detail
            and "gan" in error.value.detail
        )
        assert client.similar(shape.id) == []  # the only shape of the family
    finally:
        srv.stop()
