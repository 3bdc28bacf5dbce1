"""Compact embedded reference tables for the standardizers: countries, currencies, genders.

Kept as plain Python data so they are reviewable in a diff and need no table to be read.
Lookup keys are built with :func:`cdp.silver.std_common.fold_key_py`, the twin of the Spark
expression used on the data, so "U.S.A.", "Deutschland" and "España" find their entries.
"""

from __future__ import annotations

from cdp.silver.std_common import fold_key_py

# alpha-2 -> (alpha-3, English short name, other names and variants)
COUNTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "GB": (
        "GBR",
        "United Kingdom",
        (
            "UK",
            "U.K.",
            "Great Britain",
            "Britain",
            "England",
            "Scotland",
            "Wales",
            "Northern Ireland",
            "United Kingdom of Great Britain and Northern Ireland",
        ),
    ),
    "US": (
        "USA",
        "United States",
        ("U.S.", "U.S.A.", "United States of America", "America", "Vereinigte Staaten"),
    ),
    "DE": (
        "DEU",
        "Germany",
        ("Deutschland", "Federal Republic of Germany", "Allemagne", "Alemania", "Germania"),
    ),
    "FR": ("FRA", "France", ("French Republic", "Frankreich", "Francia")),
    "NL": ("NLD", "Netherlands", ("The Netherlands", "Holland", "Nederland", "Pays-Bas")),
    "BE": ("BEL", "Belgium", ("België", "Belgique", "Belgien")),
    "LU": ("LUX", "Luxembourg", ("Luxemburg",)),
    "IE": ("IRL", "Ireland", ("Éire", "Republic of Ireland", "Irland")),
    "ES": ("ESP", "Spain", ("España", "Espagne", "Spanien", "Spagna")),
    "PT": ("PRT", "Portugal", ()),
    "IT": ("ITA", "Italy", ("Italia", "Italie", "Italien")),
    "CH": ("CHE", "Switzerland", ("Schweiz", "Suisse", "Svizzera", "Swiss Confederation")),
    "AT": ("AUT", "Austria", ("Österreich", "Oesterreich", "Autriche")),
    "DK": ("DNK", "Denmark", ("Danmark", "Dänemark")),
    "SE": ("SWE", "Sweden", ("Sverige", "Schweden")),
    "NO": ("NOR", "Norway", ("Norge", "Norwegen")),
    "FI": ("FIN", "Finland", ("Suomi", "Finnland")),
    "IS": ("ISL", "Iceland", ("Ísland",)),
    "PL": ("POL", "Poland", ("Polska", "Polen")),
    "CZ": ("CZE", "Czechia", ("Czech Republic", "Česko", "Česká republika", "Tschechien")),
    "SK": ("SVK", "Slovakia", ("Slovensko", "Slovak Republic", "Slowakei")),
    "HU": ("HUN", "Hungary", ("Magyarország", "Ungarn")),
    "RO": ("ROU", "Romania", ("România", "Rumänien")),
    "BG": ("BGR", "Bulgaria", ("Bulgarien",)),
    "GR": ("GRC", "Greece", ("Hellas", "Ellada", "Griechenland", "EL")),
    "HR": ("HRV", "Croatia", ("Hrvatska", "Kroatien")),
    "SI": ("SVN", "Slovenia", ("Slovenija",)),
    "RS": ("SRB", "Serbia", ("Srbija",)),
    "BA": ("BIH", "Bosnia and Herzegovina", ("Bosnia", "Bosnia-Herzegovina")),
    "EE": ("EST", "Estonia", ("Eesti",)),
    "LV": ("LVA", "Latvia", ("Latvija",)),
    "LT": ("LTU", "Lithuania", ("Lietuva",)),
    "UA": ("UKR", "Ukraine", ("Ukraina",)),
    "RU": ("RUS", "Russia", ("Russian Federation", "Rossiya")),
    "BY": ("BLR", "Belarus", ()),
    "TR": ("TUR", "Turkey", ("Türkiye", "Turkiye", "Türkei")),
    "CY": ("CYP", "Cyprus", ()),
    "MT": ("MLT", "Malta", ()),
    "IL": ("ISR", "Israel", ()),
    "AE": ("ARE", "United Arab Emirates", ("UAE", "U.A.E.", "Emirates")),
    "SA": ("SAU", "Saudi Arabia", ("KSA", "Kingdom of Saudi Arabia")),
    "QA": ("QAT", "Qatar", ()),
    "KW": ("KWT", "Kuwait", ()),
    "JO": ("JOR", "Jordan", ()),
    "LB": ("LBN", "Lebanon", ()),
    "IQ": ("IRQ", "Iraq", ()),
    "IR": ("IRN", "Iran", ("Islamic Republic of Iran",)),
    "EG": ("EGY", "Egypt", ()),
    "MA": ("MAR", "Morocco", ("Maroc",)),
    "TN": ("TUN", "Tunisia", ("Tunisie",)),
    "DZ": ("DZA", "Algeria", ("Algérie",)),
    "NG": ("NGA", "Nigeria", ()),
    "GH": ("GHA", "Ghana", ()),
    "KE": ("KEN", "Kenya", ()),
    "ET": ("ETH", "Ethiopia", ()),
    "ZA": ("ZAF", "South Africa", ("RSA", "Republic of South Africa", "Suid-Afrika")),
    "IN": ("IND", "India", ("Bharat",)),
    "PK": ("PAK", "Pakistan", ()),
    "BD": ("BGD", "Bangladesh", ()),
    "LK": ("LKA", "Sri Lanka", ()),
    "CN": ("CHN", "China", ("People's Republic of China", "PRC", "中国")),
    "HK": ("HKG", "Hong Kong", ("Hong Kong SAR",)),
    "TW": ("TWN", "Taiwan", ()),
    "JP": ("JPN", "Japan", ("Nippon", "日本")),
    "KR": ("KOR", "South Korea", ("Korea", "Republic of Korea", "Korea, Republic of")),
    "SG": ("SGP", "Singapore", ()),
    "MY": ("MYS", "Malaysia", ()),
    "TH": ("THA", "Thailand", ()),
    "VN": ("VNM", "Vietnam", ("Viet Nam",)),
    "PH": ("PHL", "Philippines", ()),
    "ID": ("IDN", "Indonesia", ()),
    "AU": ("AUS", "Australia", ()),
    "NZ": ("NZL", "New Zealand", ("Aotearoa",)),
    "CA": ("CAN", "Canada", ()),
    "MX": ("MEX", "Mexico", ("México",)),
    "BR": ("BRA", "Brazil", ("Brasil",)),
    "AR": ("ARG", "Argentina", ()),
    "CL": ("CHL", "Chile", ()),
    "CO": ("COL", "Colombia", ()),
    "PE": ("PER", "Peru", ("Perú",)),
    "VE": ("VEN", "Venezuela", ()),
    "UY": ("URY", "Uruguay", ()),
    "EC": ("ECU", "Ecuador", ()),
    "CR": ("CRI", "Costa Rica", ()),
    "PA": ("PAN", "Panama", ("Panamá",)),
    "DO": ("DOM", "Dominican Republic", ()),
    "PR": ("PRI", "Puerto Rico", ()),
    "JM": ("JAM", "Jamaica", ()),
    "CU": ("CUB", "Cuba", ()),
}


def _country_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for alpha2, (alpha3, name, variants) in COUNTRIES.items():
        for text in (alpha2, alpha3, name, *variants):
            key = fold_key_py(text)
            previous = keys.setdefault(key, alpha2)
            # A key shared by two countries would make the lookup order-dependent: refuse it.
            if previous != alpha2:
                raise ValueError(f"country key {key!r} maps to both {previous} and {alpha2}")
    return keys


COUNTRY_KEYS: dict[str, str] = _country_keys()
"""fold_key(text) -> ISO 3166-1 alpha-2, for every code, name and variant above."""

# ISO 4217 codes accepted by standardize_currency (the common ones; extend as sources need).
CURRENCIES: frozenset[str] = frozenset(
    {
        "USD", "EUR", "GBP", "JPY", "CNY", "CHF", "CAD", "AUD", "NZD", "SEK",
        "NOK", "DKK", "ISK", "PLN", "CZK", "HUF", "RON", "BGN", "TRY", "RUB",
        "UAH", "INR", "PKR", "BDT", "LKR", "IDR", "MYR", "SGD", "HKD", "TWD",
        "KRW", "THB", "VND", "PHP", "BRL", "MXN", "ARS", "CLP", "COP", "PEN",
        "UYU", "ZAR", "NGN", "KES", "GHS", "EGP", "MAD", "ILS", "AED", "SAR",
        "QAR", "KWD", "BHD", "OMR", "JOD",
    }
)  # fmt: skip

# Symbols and words seen next to amounts or in currency fields (upper-cased). "" marks a
# symbol shared by several currencies ("$", "¥", "KR"): accepted, but it names no currency.
CURRENCY_MARKERS: dict[str, str] = {
    "€": "EUR",
    "EURO": "EUR",
    "EUROS": "EUR",
    "£": "GBP",
    "US$": "USD",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "AU$": "AUD",
    "NZ$": "NZD",
    "HK$": "HKD",
    "S$": "SGD",
    "R$": "BRL",
    "₹": "INR",
    "₩": "KRW",
    "₽": "RUB",
    "₺": "TRY",
    "₪": "ILS",
    "₫": "VND",
    "฿": "THB",
    "₱": "PHP",
    "₴": "UAH",
    "ZŁ": "PLN",
    "KČ": "CZK",
    "FT": "HUF",
    "RMB": "CNY",
    "元": "CNY",
    "円": "JPY",
    "YEN": "JPY",
    "$": "",
    "¥": "",
    "KR": "",
    "DOLLAR": "",
    "DOLLARS": "",
}

# fold_key(value) -> gender enum. Checked before the placeholder test, so an explicit
# "unknown" or "prefer not to say" is the value "unknown" (status ok), while "n/a" or "-" is
# status empty. Numeric codes (ISO 5218 1/2/9, or 0/1 flags) are deliberately absent: their
# meaning differs between sources, so they come out invalid until a source maps them itself.
GENDERS: dict[str, str] = {
    **dict.fromkeys(
        ["m", "male", "man", "masc", "masculine", "masculin", "masculino", "maschile",
         "mannlich", "mann", "homme", "hombre", "boy"],
        "male",
    ),
    **dict.fromkeys(
        ["f", "female", "woman", "w", "fem", "feminine", "feminin", "femenino", "femminile",
         "weiblich", "frau", "femme", "mujer", "vrouw", "girl"],
        "female",
    ),
    **dict.fromkeys(
        ["x", "o", "d", "other", "nonbinary", "nb", "enby", "genderqueer", "genderfluid",
         "agender", "divers", "diverse", "intersex", "thirdgender", "andere", "autre"],
        "other",
    ),
    **dict.fromkeys(
        ["u", "unknown", "unspecified", "notspecified", "notknown", "notstated",
         "prefernottosay", "prefernottoanswer", "prefernottodisclose", "declined",
         "declinedtoanswer", "undisclosed", "withheld"],
        "unknown",
    ),
}  # fmt: skip
GENDER_VALUES = ("male", "female", "other", "unknown")
