#!/usr/bin/env bash
# Build NLTK's WordNet 3.0 corpus offline from Debian's `wordnet-base` (+ `wordnet-sense-index`).
#
# Usage: bash scripts/get_wordnet.sh [TARGET_DIR]      (default: .cache/nltk_data)
# Then:  export NLTK_DATA="$PWD/.cache/nltk_data"
#
# Idempotent: does nothing when TARGET_DIR/corpora/wordnet is already complete. Otherwise it
# takes the .debs of `wordnet-base` and `wordnet-sense-index` (index.sense, which NLTK >= 3.9
# opens on load) from WORDNET_DEB_DIR (default .cache/debs), downloading them with
# `apt-get download` if absent (running `apt-get update` if that fails), unpacks them
# with `dpkg -x`, copies the dict files (copies, not symlinks) into
# TARGET_DIR/corpora/wordnet/ and generates the 45-line `lexnames` file that Debian leaves
# out from the lexnames(5WN) man page shipped in the same package.
set -euo pipefail

target="${1:-.cache/nltk_data}"
deb_dir="${WORDNET_DEB_DIR:-.cache/debs}"
wn_dir="$target/corpora/wordnet"
required=(data.noun data.verb data.adj data.adv index.noun index.verb index.adj index.adv
          index.sense noun.exc verb.exc adj.exc adv.exc lexnames)

complete() {
    local f
    for f in "${required[@]}"; do
        [ -s "$wn_dir/$f" ] || return 1
    done
    [ "$(wc -l < "$wn_dir/lexnames")" -eq 45 ]
}

if complete; then
    echo "WordNet 3.0 already present in $wn_dir"
    exit 0
fi

# fetch_deb PACKAGE: print the path of PACKAGE's .deb in $deb_dir, downloading it if absent.
updated=0
fetch_deb() {
    local pkg="$1" deb
    deb="$(ls "$deb_dir"/"$pkg"_*.deb 2>/dev/null | head -n 1 || true)"
    if [ -z "$deb" ]; then
        echo "downloading $pkg into $deb_dir" >&2
        if ! (cd "$deb_dir" && apt-get download "$pkg" >&2); then
            if [ "$updated" -eq 0 ]; then
                echo "apt-get download failed; running apt-get update and retrying" >&2
                if [ "$(id -u)" -eq 0 ]; then apt-get update -qq >&2; else sudo -n apt-get update -qq >&2; fi
                updated=1
            fi
            (cd "$deb_dir" && apt-get download "$pkg" >&2)
        fi
        deb="$(ls "$deb_dir"/"$pkg"_*.deb | head -n 1)"
    fi
    echo "$deb"
}

mkdir -p "$deb_dir"
deb="$(fetch_deb wordnet-base)"
# index.sense (sense keys) is in a separate package; NLTK >= 3.9 opens it when loading.
sense_deb="$(fetch_deb wordnet-sense-index)"

tmp="$(mktemp -d)"
stage=""
trap 'rm -rf "$tmp" ${stage:+"$stage"}' EXIT
dpkg -x "$deb" "$tmp/x"
dpkg -x "$sense_deb" "$tmp/x"
src="$tmp/x/usr/share/wordnet"
man="$tmp/x/usr/share/man/man5/lexnames.5WN.gz"
for f in data.noun index.sense; do
    [ -f "$src/$f" ] || { echo "error: the .deb files hold no usr/share/wordnet/$f" >&2; exit 1; }
done
[ -f "$man" ] || { echo "error: $deb holds no lexnames.5WN.gz" >&2; exit 1; }

# Build in a staging folder next to the target, then move it into place.
mkdir -p "$target/corpora"
stage="$(mktemp -d "$target/corpora/.wordnet.XXXXXX")"
cp -L "$src"/* "$stage/"
# Table rows of the man page look like "05<TAB>noun.animal<TAB>nouns denoting animals".
# Syntactic category: 1 noun, 2 verb, 3 adjective, 4 adverb (lexnames(5WN)).
zcat "$man" | awk -F'\t' '
    /^[0-9][0-9]\t[a-z]+\.[A-Za-z]+/ {
        name = $2; gsub(/[ \t]+/, "", name)
        split(name, p, ".")
        cat = (p[1] == "noun") ? 1 : (p[1] == "verb") ? 2 : (p[1] == "adj") ? 3 : 4
        printf "%s\t%s\t%d\n", $1, name, cat
    }' > "$stage/lexnames"
n="$(wc -l < "$stage/lexnames")"
if [ "$n" -ne 45 ]; then
    echo "error: generated lexnames has $n lines, expected 45" >&2
    rm -rf "$stage"
    exit 1
fi
rm -rf "$wn_dir"
mv "$stage" "$wn_dir"
chmod 755 "$wn_dir"
echo "WordNet 3.0 installed in $wn_dir (set NLTK_DATA=$(cd "$target" && pwd))"
