#!/usr/bin/env bash
# WordNet 3.0 for WUPS, offline: Debian's wordnet-base + wordnet-sense-index, copied into an
# NLTK data directory (nltk refuses symlinks there) with the `lexnames` file nltk needs
# (Debian does not ship it; it is the standard 45-line table of lexicographer files).
# Usage: bash scripts/install_wordnet.sh [NLTK_DATA]   (default: <repo>/.nltk_data). Idempotent.
set -euo pipefail
dest="${1:-${NLTK_DATA:-$(cd "$(dirname "$0")/.." && pwd)/.nltk_data}}/corpora/wordnet"
if [ -f "$dest/lexnames" ] && [ -f "$dest/data.noun" ]; then exit 0; fi
src=/usr/share/wordnet
if [ ! -f "$src/data.noun" ] || [ ! -f "$src/index.sense" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index >/dev/null
fi
mkdir -p "$dest"
for f in "$src"/*; do [ -f "$f" ] && cp -L "$f" "$dest/"; done
names=(adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
  noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
  noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
  noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
  verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
  verb.possession verb.social verb.stative verb.weather adj.ppl)
: > "$dest/lexnames.tmp"
for i in "${!names[@]}"; do
  n=${names[$i]}; case $n in adj*) c=3;; adv*) c=4;; noun*) c=1;; verb*) c=2;; esac
  printf '%02d\t%s\t%d\n' "$i" "$n" "$c" >> "$dest/lexnames.tmp"
done
mv "$dest/lexnames.tmp" "$dest/lexnames"
echo "WordNet installed in $dest"
