"""What the slurm cloud reads from Slurm's commands and from its configuration, without a
cluster: sinfo lines as Slurm prints them (several node kinds in a partition, GRES with
socket affinity, unlimited time), scontrol's one-line job records, sacct's accounting records
(the tests' cluster keeps no accounting: its sacct answers that accounting is disabled, and
scontrol's times are used there), and a misconfigured cluster said as such (never a failure of
GET /clouds)."""

from __future__ import annotations

import asyncio

from jupyter_compute_servers.clouds.slurm import (
    SlurmCloud,
    _duration_minutes,
    _slurm_time,
    parse_gres,
    parse_job,
    parse_sacct,
    parse_sinfo,
)


def test_sinfo_partitions_take_the_largest_node_and_every_gpu_type():
    out = (
        "gpu|2:00:00|64|512000|gpu:a100:4(S:0-1)|up\n"
        "gpu|2:00:00|32|256000|gpu:v100:8,gpu:a100:2|up\n"
        "cpu|1-12:00:00|128+|1000000|(null)|up\n"
        "debug|infinite|2|4000|gpu:2|down\n"
        "bad name;x|1:00|1|1|(null)|up\n"
    )
    partitions = parse_sinfo(out)
    assert set(partitions) == {"gpu", "cpu", "debug"}
    gpu = partitions["gpu"]
    assert gpu["cpu"] == 64 and gpu["memory_gb"] == 500.0 and gpu["max_time_minutes"] == 120
    assert sorted((g["type"], g["count"]) for g in gpu["gpus"]) == [("a100", 4), ("v100", 8)]
    assert partitions["cpu"]["max_time_minutes"] == 36 * 60 and partitions["cpu"]["cpu"] == 128
    assert partitions["debug"]["max_time_minutes"] is None and not partitions["debug"]["up"]
    assert partitions["debug"]["gpus"] == [{"type": "gpu", "count": 2}]  # untyped GRES


def test_durations_and_gres_as_slurm_prints_them():
    assert _duration_minutes("30:00") == 30  # minutes:seconds
    assert _duration_minutes("02:00:00") == 120
    assert _duration_minutes("7-00:00:00") == 7 * 1440
    assert _duration_minutes("UNLIMITED") is None
    assert parse_gres("gpu:h100:8(S:0-3),shard:4") == [{"type": "h100", "count": 8}]
    assert parse_gres("(null)") == []


def test_a_job_record_from_scontrol():
    line = (
        "JobId=12 JobName=jupyter-compute-server-3 UserId=root(0) JobState=TIMEOUT "
        "Reason=TimeLimit Dependency=(null) TimeLimit=00:01:00 StartTime=2026-12-06T01:03:40 "
        "EndTime=2026-12-06T01:04:40 Partition=debug NodeList=vm BatchHost=vm"
    )
    job = parse_job(line)
    assert job is not None
    assert (job.id, job.state, job.reason, job.node, job.partition) == (
        "12",
        "TIMEOUT",
        "TimeLimit",
        "vm",
        "debug",
    )
    assert not job.active
    assert SlurmCloud._ended("12", job) == "job 12 reached its time limit (00:01:00)"
    assert SlurmCloud._ended("12", None) == "job 12 is no longer known to Slurm"
    assert parse_job("slurm_load_jobs error: Invalid job id specified") is None


def test_a_misconfigured_cluster_is_said_not_raised():
    cloud = SlurmCloud(clusters={"hpc": {"host": "login", "partitions": ["a;b"]}})
    available, reason = asyncio.run(cloud.availability())
    assert not available and "partitions" in reason and "hpc" in reason
    assert cloud.defaults()["extra"] == {"time_minutes": 60}
    available, reason = asyncio.run(SlurmCloud().availability())
    assert not available and "c.SlurmCloud.clusters" in reason
    cloud = SlurmCloud(clusters={"hpc": {"host": "login", "workspace_root": "/scratch/../etc"}})
    assert "workspace_root" in asyncio.run(cloud.availability())[1]


def test_times_are_seconds_since_the_epoch_and_sacct_records_are_read():
    # Every Slurm command runs with SLURM_TIME_FORMAT=%s: no local time to guess a zone for.
    assert _slurm_time("1796541319") == 1796541319.0
    for nothing in ("Unknown", "None", "N/A", "0", "", "2026-12-06T01:03:40"):
        assert _slurm_time(nothing) is None
    # `sacct -n -X -P -j 12,... -o JobID,State,Start,End,Timelimit` as Slurm 22.05 prints it
    # with SLURM_TIME_FORMAT=%s; a requeued job has a line per run, the latest last.
    out = (
        "12|REQUEUED|1796541000|1796541100|01:00:00\n"
        "12|CANCELLED by 1000|1796541319|1796541380|01:00:00\n"
        "13|RUNNING|1796541400|Unknown|00:30:00\n"
    )
    ended = parse_sacct(out, "12")
    assert ended is not None
    assert (ended.state, ended.start, ended.end) == (
        "CANCELLED by 1000",
        1796541319.0,
        1796541380.0,
    )
    running = parse_sacct(out, "13")
    assert running is not None and running.end is None and running.time_limit == "00:30:00"
    assert parse_sacct(out, "1") is None and parse_sacct("", "12") is None
