# shellcheck shell=bash
# Helpers shared by scripts/test and scripts/clean: find the Docker
# containers and networks that belong to this project, and nothing else
# (other projects, or other people's scenarios, may share the engine).
#
# A container belongs to a scenario when Molecule made it (label
# owner=molecule) and its name is the scenario's name or starts with it
# followed by "-", "." or a digit (docs/interfaces.md: host names start with
# the scenario's name, "-" and "_" alike). Networks likewise, when no container uses them.

# All scenario names: every molecule/<name>/ holding a molecule.yml, sorted.
project_scenarios() {
    local repo="$1" f
    for f in "$repo"/molecule/*/molecule.yml; do
        [[ -f "$f" ]] && basename "$(dirname "$f")"
    done | LC_ALL=C sort
}

# An extended regular expression matching the names of the given scenarios.
scenario_name_regex() {
    local names=("$@")
    [[ ${#names[@]} -gt 0 ]] || { echo '^$'; return; }
    # "-" and "_" count as the same character: scenario auth_api may name
    # its hosts auth-api-1.
    local alt
    alt="$(printf '%s|' "${names[@]}" | sed 's/[-_]/[-_]/g')"
    echo "^(${alt%|})([-.0-9].*)?$"
}

# Containers of the given scenarios, one "ID NAME" a line.
scenario_containers() {
    local regex; regex="$(scenario_name_regex "$@")"
    docker ps -a --filter label=owner=molecule --format '{{.ID}} {{.Names}}' \
        | awk -v re="$regex" '$2 ~ re'
}

# Networks (names) of the given scenarios.
scenario_networks() {
    local regex; regex="$(scenario_name_regex "$@")"
    docker network ls --filter label=owner=molecule --format '{{.Name}}' \
        | awk -v re="$regex" '$1 ~ re'
}

# Remove the containers and networks of the given scenarios and say which.
# Never fails: it runs from exit traps.
remove_scenario_resources() {
    local found nets
    found="$(scenario_containers "$@" 2>/dev/null || true)"
    if [[ -n "$found" ]]; then
        echo "removing leftover containers: $(awk '{print $2}' <<<"$found" | tr '\n' ' ')"
        # shellcheck disable=SC2046
        docker rm -f $(awk '{print $1}' <<<"$found") >/dev/null 2>&1 || true
    fi
    nets="$(scenario_networks "$@" 2>/dev/null || true)"
    if [[ -n "$nets" ]]; then
        echo "removing leftover networks: $(tr '\n' ' ' <<<"$nets")"
        # shellcheck disable=SC2086
        docker network rm $nets >/dev/null 2>&1 || true
    fi
}
