-- GSM-7 / UCS-2 segment maths.
SELECT label, s.*
  FROM (VALUES
    ('empty', ''),
    ('160 GSM-7', repeat('a', 160)),
    ('161 GSM-7', repeat('a', 161)),
    ('306 GSM-7', repeat('a', 306)),
    ('307 GSM-7', repeat('a', 307)),
    ('extension chars count 2', 'Price: 5€ {promo} [x] ~ | ^ \'),
    ('80 euro signs', repeat('€', 80)),
    ('81 euro signs', repeat('€', 81)),
    ('GSM accents', 'Café à Ångström ñ ü Ç ΔΦΓ'),
    ('c-cedilla is UCS-2', 'ça va'),
    ('70 UCS-2', repeat('ж', 70)),
    ('71 UCS-2', repeat('ж', 71)),
    ('134 UCS-2', repeat('ж', 134)),
    ('135 UCS-2', repeat('ж', 135)),
    ('emoji is 2 units', '👍'),
    ('35 emoji', repeat('👍', 35)),
    ('36 emoji', repeat('👍', 36))
  ) AS t(label, body),
  LATERAL smslink.sms_segments(body) s;
SELECT smslink.sms_segments(NULL) IS NULL AS null_in;
SELECT smslink.is_http_url('https://acme.example/x') AS ok_https, smslink.is_http_url('http://acme.example') AS ok_http,
       smslink.is_http_url('javascript:alert(1)') AS js, smslink.is_http_url('data:text/html,hi') AS data,
       smslink.is_http_url('ftp://acme.example/f') AS ftp, smslink.is_http_url('https://u:p@acme.example/') AS creds;
