#!/usr/bin/env bash
# WordNet 3.0 for WUPS (lgvq/metrics/vqa.py), offline.
#
# No PyPI package ships usable WordNet data and nltk's downloader needs the network, so we take
# Debian's wordnet-base + wordnet-sense-index (files in /usr/share/wordnet) and make them
# readable by nltk 3.10:
#   1. nltk only reads corpora under its data path and refuses symlinks/hard links: copy the files
#      into <NLTK_DATA>/corpora/wordnet/;
#   2. nltk needs the `lexnames` file (lexicographer-file number, name, part-of-speech), which
#      Debian does not ship: write the standard 45-line table of WordNet 3.0 (lexnames(5WN)).
#
# Usage: bash scripts/install_wordnet.sh [NLTK_DATA]
#   NLTK_DATA: argument, else $NLTK_DATA, else <repo>/.nltk_data.
# Idempotent: does nothing when the corpus is already complete. The corpus is assembled in a
# temporary folder and renamed into place, so an interrupted run leaves nothing half-copied.
set -euo pipefail

root="${1:-${NLTK_DATA:-$(cd "$(dirname "$0")/.." && pwd)/.nltk_data}}"
dest="$root/corpora/wordnet"
if [ -f "$dest/lexnames" ] && [ -f "$dest/data.noun" ] && [ -f "$dest/index.sense" ]; then
  exit 0
fi

src=/usr/share/wordnet
if [ ! -f "$src/data.noun" ] || [ ! -f "$src/index.sense" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install_wordnet.sh: WordNet files missing in $src; as root run:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(wordnet-base wordnet-sense-index)
  # Try the local package lists first; refresh them only if apt cannot find the packages.
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
fi
for f in data.noun data.verb data.adj data.adv index.noun index.verb index.adj index.adv index.sense; do
  [ -f "$src/$f" ] || { echo "install_wordnet.sh: $src/$f missing after installing the packages" >&2; exit 1; }
done

mkdir -p "$root/corpora"
tmp="$(mktemp -d "$root/corpora/.wordnet.tmp-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
for f in "$src"/*; do
  if [ -f "$f" ]; then cp -L "$f" "$tmp/"; fi   # -L: real copies, nltk rejects links
done

# lexnames: number <TAB> name <TAB> syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb).
names=(adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
  noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
  noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
  noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
  verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
  verb.possession verb.social verb.stative verb.weather adj.ppl)
for i in "${!names[@]}"; do
  n=${names[$i]}
  case $n in adj*) c=3 ;; adv*) c=4 ;; noun*) c=1 ;; verb*) c=2 ;; esac
  printf '%02d\t%s\t%d\n' "$i" "$n" "$c"
done >"$tmp/lexnames"

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "WordNet installed in $dest"
