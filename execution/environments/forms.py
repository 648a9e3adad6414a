"""The environment page's forms. Each error names what is wrong and the form keeps what was typed."""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from execution.environments.actions import PhaseNetwork
from execution.models import NetworkMode
from shared.egress.network_policy import PRESETS, Bounds, parse_rules, rule_refusal

MAX_SCRIPT_CHARS = 64 * 1024
MAX_VARIABLES = 100
MAX_VALUE_CHARS = 4096
#: A setup secret shorter than this could not be masked in logs without masking ordinary words.
MIN_SECRET_CHARS = 8
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
#: Names Anyon sets itself (credentials, the egress bridge, git's proxy rewrite): a variable may not replace them.
RESERVED = re.compile(
    r"^(HOME|PATH|USER|SHELL|PWD|GH_TOKEN|GITHUB_TOKEN|(HTTPS?|ALL|NO)_PROXY|(ANYON|ANTHROPIC|CLAUDE|GIT_CONFIG)_.*"
    r"|CLAUDE|GITHUB_API_URL)$",
    re.IGNORECASE,
)
PRESET_CHOICES = [(name, name) for name in PRESETS]


def operator_bounds() -> Bounds:
    """The operator's limits on every policy (``ANYON_EGRESS_ALLOW``, ``…_DENY``, ``…_USER_HOSTS``)."""
    return Bounds.of(
        allow=settings.ANYON_EGRESS_ALLOW, deny=settings.ANYON_EGRESS_DENY, user_hosts=settings.ANYON_EGRESS_USER_HOSTS
    )


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValidationError(
            f"{name[:60]!r} is not a variable name: letters, digits and _, not starting with a digit."
        )
    if RESERVED.match(name):
        raise ValidationError(f"{name} is set by Anyon itself (credentials, the egress proxy); choose another name.")
    return name


def parse_variables(text: str) -> dict[str, str]:
    """``NAME=value`` a line (blank lines and ``#`` comments skipped); raises ValidationError naming the line."""
    variables: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        if not eq:
            raise ValidationError(f"Line {number}: write NAME=value.")
        try:
            check_name(name.strip())
        except ValidationError as exc:
            raise ValidationError(f"Line {number}: {exc.messages[0]}") from exc
        if len(value) > MAX_VALUE_CHARS:
            raise ValidationError(f"Line {number}: the value is longer than {MAX_VALUE_CHARS} characters.")
        if "\x00" in value:
            raise ValidationError(f"Line {number}: the value holds a NUL character.")
        if name.strip() in variables:
            raise ValidationError(f"Line {number}: {name.strip()} is set twice.")
        variables[name.strip()] = value
    if len(variables) > MAX_VARIABLES:
        raise ValidationError(f"At most {MAX_VARIABLES} variables.")
    return variables


def format_variables(variables: dict[str, str]) -> str:
    return "".join(f"{name}={value}\n" for name, value in variables.items())


def _script_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        max_length=MAX_SCRIPT_CHARS,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "class": "mono"}),
        error_messages={
            "max_length": f"The script is %(show_value)s characters long; the limit is {MAX_SCRIPT_CHARS}."
        },
    )


def _network_fields(
    phase: str, modes: list[tuple[str, str]], rules_help: str
) -> tuple[forms.ChoiceField, forms.MultipleChoiceField, forms.CharField, forms.BooleanField]:
    """One phase's network policy fields: mode, presets, custom entries, read-only (``PhaseNetwork``)."""
    return (
        forms.ChoiceField(label=f"{phase}: network", choices=modes, initial="off"),
        forms.MultipleChoiceField(
            label=f"{phase}: presets", choices=PRESET_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
        ),
        forms.CharField(
            label=f"{phase}: custom entries",
            required=False,
            help_text=rules_help,
            widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "mono"}),
        ),
        forms.BooleanField(label=f"{phase}: read-only (GET and HEAD only)", required=False),
    )


class EnvironmentForm(forms.Form):
    setup_script = _script_field(
        "Setup script", "Runs with bash in /workspace after the clone, before the agent, with the setup secrets."
    )
    maintenance_script = _script_field("Maintenance script", "Optional; for starts from a cached setup.")
    variables = forms.CharField(
        required=False,
        strip=False,
        help_text="NAME=value, one a line. Shown here, given to the setup script and the agent. Not for secrets.",
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "mono"}),
    )
    setup_network_mode, setup_network_presets, setup_network_rules, setup_network_read_only = _network_fields(
        "Setup",
        NetworkMode.choices,
        "host, host:port, *.example.com or http://host/path, one a line; add read-only to allow only reads.",
    )
    agent_network_mode, agent_network_presets, agent_network_rules, agent_network_read_only = _network_fields(
        "Agent", [c for c in NetworkMode.choices if c[0] != NetworkMode.OBSERVE], "As for setup."
    )

    def clean_variables(self) -> dict[str, str]:
        return parse_variables(self.cleaned_data["variables"])

    def _rules(self, field: str) -> str:
        """Entries the proxy reads, each within the operator's bounds (``ANYON_EGRESS_DENY``, ``…_USER_HOSTS``)."""
        text = self.cleaned_data[field]
        try:
            rules = parse_rules(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        bounds = operator_bounds()
        refused = [problem for rule in rules if (problem := rule_refusal(rule, bounds))]
        if refused:
            raise ValidationError("; ".join(refused[:3]))
        return text

    def clean_setup_network_rules(self) -> str:
        return self._rules("setup_network_rules")

    def clean_agent_network_rules(self) -> str:
        return self._rules("agent_network_rules")

    def network(self, phase: str) -> PhaseNetwork:
        data = self.cleaned_data
        return PhaseNetwork(
            mode=data[f"{phase}_network_mode"],
            presets=tuple(data[f"{phase}_network_presets"]),
            rules=data[f"{phase}_network_rules"],
            read_only=data[f"{phase}_network_read_only"],
        )

    @classmethod
    def initial_from(cls, environment) -> dict:
        initial = {"variables": format_variables(environment.variables)}
        for name in cls.base_fields:
            if name != "variables":
                initial[name] = getattr(environment, name)
        return initial


class SetupSecretForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="The variable the setup script reads it from.")
    value = forms.CharField(
        strip=False,
        max_length=MAX_VALUE_CHARS,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Never shown again. Given to the setup script only, never to the agent.",
    )

    def clean_name(self) -> str:
        return check_name(self.cleaned_data["name"].strip())

    def clean_value(self) -> str:
        value = self.cleaned_data["value"].strip()
        if "\n" in value or "\r" in value or "\x00" in value:
            raise ValidationError("A setup secret is one line (logs mask it line by line).")
        if len(value) < MIN_SECRET_CHARS:
            raise ValidationError(f"A setup secret needs at least {MIN_SECRET_CHARS} characters, so logs can mask it.")
        return value


class RepositoryForm(forms.Form):
    repository = forms.CharField(label="Repository (owner/name)", max_length=200)

    def clean_repository(self) -> str:
        text = self.cleaned_data["repository"].strip().strip("/").removesuffix(".git")
        parts = text.split("/")
        if len(parts) != 2 or not all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", p) for p in parts):
            raise ValidationError("Write the repository as owner/name, e.g. acme/widgets.")
        return text.lower()
