"""Seed the demo city: units, officers, chat channels to the demo's own fake robots, projects."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlmodel import Session

from service.demo import city
from service.models import Channel, Officer, Project, Unit


@dataclass
class World:
    city: Unit
    taskforce: Unit
    counties: list[Unit] = field(default_factory=list)
    units: dict[str, Unit] = field(default_factory=dict)
    projects: list[Project] = field(default_factory=list)
    officers: dict[int, list[Officer]] = field(default_factory=dict)


def _unit(
    session: Session, world: World | None, code, name, level, kind, parent: Unit | None, tags=()
) -> Unit:
    unit = Unit(
        code=code,
        name=name,
        level=level,
        kind=kind,
        parent_id=parent.id if parent else None,
        tags=list(tags),
    )
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    if world is not None:
        world.units[code] = unit
    return unit


def _officer(session: Session, world: World, rng: random.Random, unit: Unit, role: str) -> Officer:
    name = rng.choice(city.SURNAMES) + rng.choice(city.GIVEN)
    mobile = "139" + "".join(rng.choice("0123456789") for _ in range(8))
    officer = Officer(name=name, mobile=mobile, unit_id=unit.id, role=role)
    session.add(officer)
    session.flush()
    world.officers.setdefault(unit.id, []).append(officer)
    return officer


def robot_url(base: str, kind: str, unit: Unit) -> str:
    if kind == "dingtalk":
        return f"{base}/demo/robot/dingtalk/robot/send?access_token={unit.code}"
    return f"{base}/demo/robot/wecom/cgi-bin/webhook/send?key={unit.code}"


def seed(session: Session, base_url: str, rng: random.Random, projects: int = 40) -> World:
    gov = _unit(
        session, None, city.CITY[0], city.CITY[1], "city", "government", None, ["city_government"]
    )
    world = World(city=gov, taskforce=gov)
    world.units[gov.code] = gov
    for code, name, tags in city.TASKFORCES:
        unit = _unit(session, world, code, name, "city", "taskforce", gov, tags)
        if "general_taskforce" in tags:
            world.taskforce = unit
    for code, name, tags in city.LEADERS:
        _unit(session, world, code, name, "city", "leader", gov, tags)
    for code, name in city.DEPARTMENTS:
        _unit(session, world, code, name, "city", "department", gov)
    for code, name, towns in city.COUNTIES:
        county = _unit(session, world, code, name, "county", "government", gov)
        world.counties.append(county)
        for i, town in enumerate(towns, 1):
            _unit(session, world, f"{code}-t{i}", town, "township", "government", county)
    for unit in list(world.units.values()):
        if unit.kind == "leader":
            _officer(session, world, rng, unit, "leader")
        elif unit.level != "township":
            _officer(session, world, rng, unit, "lead")
            _officer(session, world, rng, unit, "liaison")
        # Every county, department, taskforce and leader office has a chat group; some use DingTalk.
        if unit.level != "township" and unit.code != gov.code:
            kind = "dingtalk" if unit.kind == "government" and rng.random() < 0.4 else "wecom"
            secret = f"SECdemo-{unit.code}" if kind == "dingtalk" else None
            session.add(
                Channel(
                    unit_id=unit.id, kind=kind, url=robot_url(base_url, kind, unit), secret=secret
                )
            )
    for n in range(projects):
        county = world.counties[n % len(world.counties)]
        kind = rng.choice(city.PROJECT_KINDS)
        project = Project(
            code=f"2026-410700-{40 + n % 50:02d}-01-{100000 + n * 137:06d}",
            name=f"{county.name.replace('人民政府', '')}{kind}项目",
            category=rng.choice(city.PROJECT_CATEGORIES),
            county_unit_id=county.id,
            enterprise=f"新乡{kind[:4]}有限公司",
            total_investment=rng.randrange(5000, 500000),
        )
        session.add(project)
        world.projects.append(project)
    session.flush()
    return world
