"""Browse an OPC UA server for its variables, with the Browse and Read services only (never Write, never Call).

From ``/Objects`` (or a browse path below it) down a number of levels, breadth first, a level per
batch of Browse requests; then one batch of Reads for each listed variable's data type, access
level, current value and engineering unit (the ``EngineeringUnits`` property).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from asyncua import Client, ua
from cryptography import x509

from agent.discover import DiscoveryError
from drivers.opcua.driver import DEFAULT_MAX_NODES_PER_READ, MAX_NODES_PER_READ_NODE, quality_of
from drivers.opcua.security import configure_security, fingerprint, refusal_hint
from drivers.opcua.spec import Endpoint
from drivers.opcua.text import log_safe

log = logging.getLogger(__name__)

OBJECTS = ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder))
HIERARCHICAL = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
HAS_PROPERTY = ua.NodeId(ua.Int32(ua.ObjectIds.HasProperty))
#: Server/ServerCapabilities/OperationLimits/MaxNodesPerBrowse
MAX_NODES_PER_BROWSE_NODE = ua.NodeId(ua.Int32(11710))
#: used when the server publishes no OperationLimits/MaxNodesPerBrowse
DEFAULT_MAX_NODES_PER_BROWSE = 50
_READ, _WRITE, _HISTORY = (1 << ua.AccessLevel.CurrentRead, 1 << ua.AccessLevel.CurrentWrite,
                           1 << ua.AccessLevel.HistoryRead)
#: the attributes read of every variable listed, in this order
_ATTRIBUTES = (ua.AttributeIds.DataType, ua.AttributeIds.ValueRank, ua.AttributeIds.AccessLevel, ua.AttributeIds.Value)


@dataclass(frozen=True)
class BrowseScope:
    """Where to look: from ``root`` (a browse path from /Objects) down ``depth`` levels, listing the
    variables whose browse name or dotted path matches the glob ``match``."""

    root: str = "/Objects"
    depth: int = 6
    match: str = "*"
    #: also namespace 0 nodes (the server's own Server object and diagnostics)
    include_standard: bool = False
    #: stop browsing after this many nodes (a guard against huge or cyclic address spaces)
    max_nodes: int = 10_000


@dataclass(frozen=True)
class FoundVariable:
    """One variable: where it is, what it holds, and how it can be used."""

    path: tuple[str, ...]     # browse names from /Objects down to the variable
    node: str                 # nsu=<namespace URI>;<identifier> (namespace 0: the identifier alone)
    data_type: str
    array: bool
    access: str               # "read", "read/write", ... (the AccessLevel attribute as text)
    value: Any                # the current value (None when it could not be read)
    quality: str              # of that value: good, uncertain:..., bad:...
    unit: str | None          # EngineeringUnits' DisplayName

    @property
    def dotted(self) -> str:
        """The browse path as ``Plant.Tank1.Level``."""
        return ".".join(self.path)


@dataclass
class Inventory:
    """What a browse found."""

    endpoint: str
    scope: BrowseScope
    variables: list[FoundVariable]
    browsed: int = 0                  # nodes whose children were asked for
    seen_variables: int = 0           # variables in scope, matching or not
    truncated: bool = False           # stopped at ``max_nodes``
    namespaces: dict[int, str] = field(default_factory=dict)   # the namespaces the variables are in
    #: SHA-256 of the server certificate when it was accepted without a trust directory
    unverified_certificate: str | None = None


@dataclass
class _Node:
    nodeid: ua.NodeId
    path: tuple[str, ...]
    variable: bool
    order: tuple[int, ...]            # position in the tree: variables are listed in browse order
    unit_node: ua.NodeId | None = None


async def discover(endpoint: Endpoint, scope: BrowseScope) -> Inventory:
    """Open a session on ``endpoint``, browse ``scope`` and close; :class:`DiscoveryError` says why not."""
    client = Client(endpoint.url, timeout=endpoint.timeout)
    client.name = client.description = "HackSky Edge discovery"
    seen: list[str] = []
    try:
        await configure_security(client, endpoint)
        if endpoint.policy != "None" and endpoint.trust_dir is None:
            client.certificate_validator = _recorder(seen)
        await asyncio.wait_for(client.connect(), endpoint.timeout)
    except Exception as exc:  # connection, security and session errors all mean: no session (as in the driver)
        await _disconnect(client)
        why = _cause(exc, endpoint.timeout) + refusal_hint(exc, endpoint, client.application_uri)
        raise DiscoveryError(f"cannot open a session on {endpoint.url}: {why}") from None
    try:
        inventory = await _Browser(client, scope).run(endpoint.url)
    except (OSError, TimeoutError, EOFError, ua.UaError) as exc:
        raise DiscoveryError(f"{endpoint.url}: browsing failed: {_cause(exc, endpoint.timeout)}") from None
    finally:
        await _disconnect(client)
    inventory.unverified_certificate = seen[0] if seen else None
    return inventory


def _recorder(seen: list[str]):  # type: ignore[no-untyped-def]
    """A certificate check that accepts the server's certificate and keeps its fingerprint (no trust dir)."""

    async def check(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        seen.append(fingerprint(cert))
        log.warning("server certificate of %s not verified (no trust directory): SHA-256 %s",
                    log_safe(app.ApplicationUri), seen[-1])

    return check


def _cause(exc: BaseException, timeout: float) -> str:
    """A few words on why a request failed."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return log_safe(exc, 300) if str(exc) else type(exc).__name__


async def _disconnect(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception:  # the server may be gone or the session never opened: nothing to undo
        log.debug("disconnect failed", exc_info=True)


def _element(text: str) -> tuple[int | None, str]:
    """``2:Plant`` -> (2, "Plant"); ``Plant`` -> (None, "Plant"): any namespace."""
    prefix, sep, name = text.partition(":")
    return (int(prefix), name) if sep and prefix.isdigit() else (None, text)


def _nodeid(ref: ua.NodeId) -> ua.NodeId:
    """A plain NodeId of a reference's target (asyncua may decode it as an ExpandedNodeId)."""
    return ua.NodeId(ref.Identifier, ref.NamespaceIndex, ref.NodeIdType)


def access_text(level: int | None) -> str:
    """The AccessLevel attribute as words: ``read``, ``read/write``, ``write``, ``no access``; ``, history``."""
    if level is None:
        return "access unknown"
    text = "/".join(name for bit, name in ((_READ, "read"), (_WRITE, "write")) if level & bit) or "no access"
    return text + (", history" if level & _HISTORY else "")


def node_text(nodeid: ua.NodeId, namespaces: list[str]) -> str:
    """``nsu=<URI>;s=...``: the namespace by URI, which survives index changes across server restarts."""
    bare = ua.NodeId(nodeid.Identifier, ua.Int16(0), nodeid.NodeIdType).to_string()
    index = nodeid.NamespaceIndex
    if index == 0:
        return bare
    if index < len(namespaces) and ";" not in namespaces[index]:
        return f"nsu={namespaces[index]};{bare}"
    return nodeid.to_string()  # an index the server does not list, or a URI the nsu= form cannot carry


def _value(dv: ua.DataValue) -> Any:
    good = dv.StatusCode is None or dv.StatusCode.is_good()
    return dv.Value.Value if good and dv.Value is not None else None


class _Browser:
    """One browse over an open session."""

    def __init__(self, client: Client, scope: BrowseScope) -> None:
        self.client, self.scope = client, scope
        self.per_read, self.per_browse = DEFAULT_MAX_NODES_PER_READ, DEFAULT_MAX_NODES_PER_BROWSE
        self.browsed = 0
        self.truncated = False

    async def run(self, url: str) -> Inventory:
        await self._limits()
        namespaces = list(await self.client.get_namespace_array())
        root, prefix = await self._resolve_root()
        nodes = await self._walk(root, prefix)
        wanted = [n for n in nodes if fnmatchcase(n.path[-1], self.scope.match)
                  or fnmatchcase(".".join(n.path), self.scope.match)]
        variables = await self._describe(wanted, namespaces)
        used = {n.nodeid.NamespaceIndex for n in wanted} - {0}
        return Inventory(url, self.scope, variables, self.browsed, len(nodes), self.truncated,
                         {i: namespaces[i] for i in sorted(used) if i < len(namespaces)})

    async def _limits(self) -> None:
        """The server's OperationLimits for Read and Browse, where it publishes them."""
        read, browse = await self._read([(MAX_NODES_PER_READ_NODE, ua.AttributeIds.Value),
                                          (MAX_NODES_PER_BROWSE_NODE, ua.AttributeIds.Value)])
        self.per_read = int(_value(read) or 0) or DEFAULT_MAX_NODES_PER_READ
        self.per_browse = int(_value(browse) or 0) or DEFAULT_MAX_NODES_PER_BROWSE

    async def _children(self, nodes: list[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
        """Hierarchical references (objects and variables) of each node, continuation points followed."""
        out: list[list[ua.ReferenceDescription]] = []
        for start in range(0, len(nodes), self.per_browse):
            params = ua.BrowseParameters()
            params.View.Timestamp = ua.get_win_epoch()  # the current view, not one at a time
            params.NodesToBrowse = [ua.BrowseDescription(
                NodeId=n, BrowseDirection=ua.BrowseDirection.Forward, ReferenceTypeId=HIERARCHICAL,
                IncludeSubtypes=True, NodeClassMask=ua.UInt32(ua.NodeClass.Object | ua.NodeClass.Variable),
                ResultMask=ua.UInt32(ua.BrowseResultMask.All)) for n in nodes[start:start + self.per_browse]]
            for node, result in zip(params.NodesToBrowse, await self.client.uaclient.browse(params), strict=True):
                refs = list(result.References)
                point = result.ContinuationPoint
                while point:
                    (more,) = await self.client.uaclient.browse_next(
                        ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[point]))
                    refs += more.References
                    point = more.ContinuationPoint
                if not result.StatusCode.is_good():
                    log.info("browse of %s: %s", node.NodeId.to_string(), quality_of(result.StatusCode))
                out.append(refs)
        return out

    async def _resolve_root(self) -> tuple[ua.NodeId, tuple[str, ...]]:
        """The NodeId of the ``--root`` browse path, found by browsing each step, and its browse names."""
        root = self.scope.root.rstrip("/")
        if root != "/Objects" and not root.startswith("/Objects/"):
            raise DiscoveryError(f"--root {self.scope.root!r}: a browse path starts at /Objects, e.g. /Objects/2:Plant")
        node, here = OBJECTS, "/Objects"
        names: tuple[str, ...] = ()
        for element in root.split("/")[2:]:
            ns, name = _element(element)
            (refs,) = await self._children([node])
            found = [r for r in refs if r.ReferenceTypeId != HAS_PROPERTY and r.BrowseName.Name == name
                     and ns in (None, r.BrowseName.NamespaceIndex)]
            if not found:
                children = sorted(f"{r.BrowseName.NamespaceIndex}:{r.BrowseName.Name}" for r in refs)
                listed = ", ".join(children[:12]) + (", ..." if len(children) > 12 else "")
                raise DiscoveryError(f"--root {self.scope.root}: {here} has no child {element!r} "
                                     f"(its children: {log_safe(listed) or 'none'})")
            node, names, here = _nodeid(found[0].NodeId), (*names, name), f"{here}/{element}"
        return node, names

    async def _walk(self, root: ua.NodeId, prefix: tuple[str, ...]) -> list[_Node]:
        """Variables down to ``depth`` levels below ``root``, in browse order, with their unit's node."""
        depth, frontier = self.scope.depth, [_Node(root, prefix, False, ())]
        visited, variables, level = {root}, [], 0
        while frontier and level <= depth and not self.truncated:
            # at the last level only variables are browsed: for their properties (EngineeringUnits)
            asked = frontier if level < depth else [n for n in frontier if n.variable]
            children = await self._children([n.nodeid for n in asked])
            self.browsed += len(asked)
            frontier = []
            for parent, refs in zip(asked, children, strict=True):
                for index, ref in enumerate(refs):
                    if ref.ReferenceTypeId == HAS_PROPERTY:  # properties describe; they are not points
                        if parent.variable and ref.BrowseName.Name == "EngineeringUnits":
                            parent.unit_node = _nodeid(ref.NodeId)
                        continue
                    nodeid = _nodeid(ref.NodeId)
                    remote = isinstance(ref.NodeId, ua.ExpandedNodeId) and ref.NodeId.ServerIndex  # another server's
                    if level >= depth or nodeid in visited or remote:
                        continue
                    if nodeid.NamespaceIndex == 0 and not self.scope.include_standard:
                        continue
                    if len(visited) >= self.scope.max_nodes:
                        self.truncated = True
                        break
                    visited.add(nodeid)
                    child = _Node(nodeid, (*parent.path, ref.BrowseName.Name),
                                  ref.NodeClass == ua.NodeClass.Variable, (*parent.order, index))
                    frontier.append(child)
                    if child.variable:
                        variables.append(child)
            level += 1
        return sorted(variables, key=lambda n: n.order)

    async def _read(self, items: Sequence[tuple[ua.NodeId, int]]) -> list[ua.DataValue]:
        """One attribute per item, in Read requests of at most the server's MaxNodesPerRead."""
        out: list[ua.DataValue] = []
        for start in range(0, len(items), self.per_read):
            params = ua.ReadParameters()
            params.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=ua.UInt32(a))
                                  for n, a in items[start:start + self.per_read]]
            out += await self.client.uaclient.read(params)
        return out

    async def _describe(self, nodes: list[_Node], namespaces: list[str]) -> list[FoundVariable]:
        """Data type, array or not, access level, current value and unit of each variable."""
        items = [(n.nodeid, a) for n in nodes for a in _ATTRIBUTES]
        items += [(n.unit_node, ua.AttributeIds.Value) for n in nodes if n.unit_node is not None]
        values = iter(await self._read(items))
        rows = [[next(values) for _ in _ATTRIBUTES] for _ in nodes]
        units = [_value(next(values)) if n.unit_node is not None else None for n in nodes]
        attributes = [_attributes(row) for row in rows]
        type_names = await self._type_names({a.data_type for a in attributes if a.data_type is not None})
        found = []
        for node, row, attrs, unit in zip(nodes, rows, attributes, units, strict=True):
            value = _value(row[3])
            found.append(FoundVariable(
                path=node.path, node=node_text(node.nodeid, namespaces),
                data_type=type_names.get(attrs.data_type, "?") if attrs.data_type is not None else "?",
                array=(attrs.rank is not None and attrs.rank >= 0) or isinstance(value, list),
                access=access_text(attrs.access), value=value, quality=quality_of(row[3].StatusCode),
                unit=(unit.DisplayName.Text or None) if isinstance(unit, ua.EUInformation) else None))
        return found

    async def _type_names(self, types: set[ua.NodeId]) -> dict[ua.NodeId, str]:
        """Standard types by their well-known names; a server's own types by their BrowseName (one Read)."""
        names = {t: ua.ObjectIdNames[t.Identifier] for t in types
                 if t.NamespaceIndex == 0 and isinstance(t.Identifier, int) and t.Identifier in ua.ObjectIdNames}
        others = sorted(types - set(names), key=lambda t: t.to_string())
        for t, dv in zip(others, await self._read([(t, ua.AttributeIds.BrowseName) for t in others]), strict=True):
            name = _value(dv)
            names[t] = name.Name if isinstance(name, ua.QualifiedName) else t.to_string()
        return names


@dataclass(frozen=True)
class _Attributes:
    data_type: ua.NodeId | None
    rank: int | None        # ValueRank: -1 scalar, 0 or more an array
    access: int | None      # AccessLevel bits


def _attributes(row: list[ua.DataValue]) -> _Attributes:
    data_type, rank, access = (_value(dv) for dv in row[:3])
    return _Attributes(data_type if isinstance(data_type, ua.NodeId) else None,
                       rank if isinstance(rank, int) else None, access if isinstance(access, int) else None)
