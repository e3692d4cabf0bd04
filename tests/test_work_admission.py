"""skinray.serving.WorkAdmission: the replica's own bound on the work (issue 23). Serve's slots
are many and cheap (a slow body holds one while it arrives); only requests whose body has come
take a working place, a few more wait for one, and beyond them the answer is 503 at once."""

from __future__ import annotations

import asyncio

import pytest

from skinray.serving import BusyError, WorkAdmission


def test_working_places_then_waiting_places_then_busy_at_once():
    async def scenario():
        admission = WorkAdmission(limit=1000, requests=2, waiting=1)
        await admission.acquire(10, timeout=1)
        await admission.acquire(10, timeout=1)  # two working
        third = asyncio.create_task(admission.acquire(10, timeout=5))
        await asyncio.sleep(0.01)
        assert not third.done() and admission.waiting == 1
        with pytest.raises(BusyError):  # no waiting place left: refused without waiting
            await admission.acquire(10, timeout=5)
        await admission.release(10)
        await asyncio.wait_for(third, 1)  # the freed place goes to the one waiting
        assert (admission.working, admission.waiting, admission.used) == (2, 0, 20)

    asyncio.run(scenario())


def test_pixels_bound_the_work_too_and_a_wait_ends_at_its_deadline():
    async def scenario():
        admission = WorkAdmission(limit=100, requests=16, waiting=4)
        await admission.acquire(80, timeout=1)
        with pytest.raises(asyncio.TimeoutError):  # 80 + 30 > 100 pixels: waits, then its deadline
            await admission.acquire(30, timeout=0.05)
        assert (admission.working, admission.waiting, admission.used) == (1, 0, 80)
        await admission.acquire(20, timeout=0.05)  # fits beside the first

    asyncio.run(scenario())
